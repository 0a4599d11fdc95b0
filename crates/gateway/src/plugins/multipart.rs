//! `multipart/form-data` bodies as the plugins that read or rewrite them see them (`oauth2-introspection` and
//! `key-auth` find and hide a credential in one, `request-transformer` edits its fields): the parts of a body the
//! proxy holds whole, and the body written back from them.

use bytes::Bytes;
use http::HeaderMap;

/// One part: its field name, its own headers (`Content-Disposition`, `Content-Type`), and its bytes.
#[derive(Debug)]
pub struct Part {
    pub name: Option<String>,
    pub headers: HeaderMap,
    pub data: Bytes,
}

impl Part {
    /// Whether this is the field `name`.
    pub fn is(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name)
    }
}

/// The parts of `body`, in order.
pub async fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, multer::Error> {
    let stream = futures_util::stream::once(std::future::ready(Ok::<_, std::convert::Infallible>(body.clone())));
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(field) = multipart.next_field().await? {
        let name = field.name().map(str::to_owned);
        let headers = field.headers().clone();
        let data = field.bytes().await?;
        parts.push(Part { name, headers, data });
    }
    Ok(parts)
}

/// A body of `parts`, delimited by `boundary`.
pub fn encode<'a>(boundary: &str, parts: impl IntoIterator<Item = &'a Part>) -> Bytes {
    let mut out = Vec::new();
    for part in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        for (name, value) in &part.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&part.data);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Bytes::from(out)
}
