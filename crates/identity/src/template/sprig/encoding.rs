//! Sprig's encodings and digests: base64, base32 (standard alphabets, padded), SHA-1, SHA-256, Adler-32.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gtmpl::{FuncError, Value};
use sha1::Digest;

use crate::template::value::{exactly, strval};

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn one(args: &[Value], func: &str, f: impl Fn(&str) -> String) -> Result<Value, FuncError> {
    exactly(args, 1, func)?;
    Ok(Value::from(f(&strval(&args[0]))))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decoded text as Go's `string(bytes)` would print it (invalid UTF-8 replaced).
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn b64enc(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "b64enc", |s| STANDARD.encode(s))
}

/// `b64dec`: like Sprig, a decoding error is returned as the result's text.
pub fn b64dec(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "b64dec", |s| STANDARD.decode(s).map_or_else(|e| e.to_string(), |b| text(&b)))
}

pub fn b32_encode(input: &[u8]) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(5) * 8);
    for chunk in input.chunks(5) {
        let mut buf = [0u8; 5];
        buf[..chunk.len()].copy_from_slice(chunk);
        let bits = buf.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        let symbols = (chunk.len() * 8).div_ceil(5);
        for i in 0..8 {
            if i < symbols {
                out.push(char::from(B32[((bits >> (35 - i * 5)) & 31) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn b32_decode(input: &str) -> Result<Vec<u8>, String> {
    let trimmed = input.trim_end_matches('=');
    if !input.len().is_multiple_of(8) {
        return Err(format!("illegal base32 data at input byte {}", input.len() / 8 * 8));
    }
    let mut out = Vec::with_capacity(trimmed.len() * 5 / 8);
    let (mut acc, mut bits) = (0u64, 0u32);
    for (i, c) in trimmed.bytes().enumerate() {
        let v = B32.iter().position(|&b| b == c).ok_or_else(|| format!("illegal base32 data at input byte {i}"))?;
        acc = (acc << 5) | v as u64;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

pub fn b32enc(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "b32enc", |s| b32_encode(s.as_bytes()))
}

pub fn b32dec(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "b32dec", |s| b32_decode(s).map_or_else(|e| e, |b| text(&b)))
}

pub fn sha1sum(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "sha1sum", |s| hex(&sha1::Sha1::digest(s.as_bytes())))
}

pub fn sha256sum(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "sha256sum", |s| hex(&sha2::Sha256::digest(s.as_bytes())))
}

/// `adler32sum`: the checksum as a decimal string.
pub fn adler32sum(args: &[Value]) -> Result<Value, FuncError> {
    one(args, "adler32sum", |s| {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in s.as_bytes() {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        ((b << 16) | a).to_string()
    })
}
