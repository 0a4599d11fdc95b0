//! Regex route paths (`~/…`) read the way Kong's PCRE router reads them, compiled for the `regex` crate.
//!
//! Kong 2.x and Kong 3.x's `traditional` router flavour hand a regex path to PCRE, which is lenient where the
//! `regex` crate is strict: a `{` that does not start a valid repetition (`{id}` in `/users/{id}/(\d+)`) is a
//! literal brace, `}` is always one, and `[` inside a class is a literal. Those are rewritten as escapes here, so
//! every pattern PCRE reads the same way compiles. What a linear-time engine cannot do at all (backreferences,
//! look-around, atomic groups, possessive quantifiers, recursion, conditionals) is refused with its name, never
//! approximated: a route must match what it matched under Kong or not load.
//!
//! The gateway's router and the entity validation both call [`compile`], so what validates is what routes.

use regex::Regex;

/// The anchored regex a route path's pattern (the text after `~`) matches with: Kong anchors regex paths at the
/// start of the path only.
pub fn compile(pattern: &str) -> Result<Regex, String> {
    let translated = translate(pattern)?;
    Regex::new(&format!("^(?:{translated})")).map_err(|e| {
        let detail = e.to_string();
        let detail = detail.lines().last().unwrap_or("syntax error").trim().to_owned();
        format!("invalid regex: '{pattern}' ({detail})")
    })
}

fn unsupported(pattern: &str, what: &str) -> String {
    format!(
        "invalid regex: '{pattern}' ({what} is not supported: Gatehouse's regex engine matches in linear time; \
         see docs/compatibility.md)"
    )
}

/// Rewrites a PCRE route pattern into the `regex` crate's syntax with the same meaning, or names the PCRE feature
/// it needs that the `regex` crate does not have.
pub fn translate(pattern: &str) -> Result<String, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    // Whether the last thing written can take a quantifier (PCRE reads `{2}` after `(` or `|` as text).
    let mut repeatable = false;
    // Whether the last thing written was a quantifier: a `+` after one makes it possessive.
    let mut after_quantifier = false;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match c {
            '\\' => {
                let Some(e) = next else {
                    return Err(format!("invalid regex: '{pattern}' (a trailing backslash escapes nothing)"));
                };
                i += 2;
                match e {
                    '1'..='9' => return Err(unsupported(pattern, &format!("the backreference \\{e}"))),
                    'k' | 'g' => return Err(unsupported(pattern, &format!("the backreference \\{e}"))),
                    // `\Q…\E`: everything between is literal.
                    'Q' => {
                        let mut literal = String::new();
                        while i < chars.len() && !(chars[i] == '\\' && chars.get(i + 1) == Some(&'E')) {
                            literal.push(chars[i]);
                            i += 1;
                        }
                        i = (i + 2).min(chars.len());
                        out.push_str(&regex::escape(&literal));
                        repeatable = !literal.is_empty();
                        after_quantifier = false;
                        continue;
                    }
                    // A stray `\E` means nothing to PCRE.
                    'E' => continue,
                    // End of the subject (or before a final newline, which a path never has).
                    'Z' => out.push('$'),
                    // `\x{…}`, `\p{…}`, `\P{…}`: the braces belong to the escape.
                    'x' | 'p' | 'P' if chars.get(i) == Some(&'{') => {
                        out.push('\\');
                        out.push(e);
                        while i < chars.len() {
                            out.push(chars[i]);
                            i += 1;
                            if chars[i - 1] == '}' {
                                break;
                            }
                        }
                    }
                    // PCRE lets any non-alphanumeric character be escaped; the `regex` crate accepts the ASCII
                    // punctuation it knows, so other characters are written as themselves (escaped when meta).
                    e if !e.is_ascii() || e == '<' || e == '>' => out.push_str(&regex::escape(&e.to_string())),
                    e => {
                        out.push('\\');
                        out.push(e);
                    }
                }
                repeatable = true;
                after_quantifier = false;
                continue;
            }
            '[' => {
                i = class(pattern, &chars, i, &mut out)?;
                repeatable = true;
                after_quantifier = false;
                continue;
            }
            '(' => {
                let rest: String = chars[i + 1..].iter().take(4).collect();
                if rest.starts_with("?=") || rest.starts_with("?!") {
                    return Err(unsupported(pattern, "look-ahead"));
                }
                if rest.starts_with("?<=") || rest.starts_with("?<!") {
                    return Err(unsupported(pattern, "look-behind"));
                }
                if rest.starts_with("?>") {
                    return Err(unsupported(pattern, "an atomic group"));
                }
                if rest.starts_with("?P=") || rest.starts_with("?P>") || rest.starts_with("?&") {
                    return Err(unsupported(pattern, "a backreference or subroutine call"));
                }
                if rest.starts_with("?R")
                    || (rest.starts_with('?') && rest.chars().nth(1).is_some_and(|d| d.is_ascii_digit() || d == '+'))
                {
                    return Err(unsupported(pattern, "recursion"));
                }
                if rest.starts_with("?(") {
                    return Err(unsupported(pattern, "a conditional group"));
                }
                if rest.starts_with("?|") {
                    return Err(unsupported(pattern, "a branch-reset group"));
                }
                if rest.starts_with('*') {
                    return Err(unsupported(pattern, "a backtracking control verb"));
                }
                if rest.starts_with("?#") {
                    // A comment: PCRE ignores it up to the next `)`.
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                    continue;
                }
                if rest.starts_with("?<") {
                    // A named group: `(?<name>…)` is PCRE's spelling, `(?P<name>…)` the one every `regex`
                    // version reads (Kong's ATC router makes the same rewrite).
                    out.push_str("(?P<");
                    i += 3;
                } else if rest.starts_with("?'") {
                    out.push_str("(?P<");
                    i += 3;
                    while i < chars.len() && chars[i] != '\'' {
                        out.push(chars[i]);
                        i += 1;
                    }
                    out.push('>');
                    i += 1;
                } else {
                    out.push('(');
                    i += 1;
                }
                repeatable = false;
                after_quantifier = false;
                continue;
            }
            '{' => {
                if let Some(end) = quantifier_end(&chars, i)
                    && repeatable
                {
                    out.extend(&chars[i..=end]);
                    i = end + 1;
                    after_quantifier = true;
                    repeatable = false;
                    if chars.get(i) == Some(&'?') {
                        out.push('?');
                        i += 1;
                    } else if chars.get(i) == Some(&'+') {
                        return Err(unsupported(pattern, "a possessive quantifier"));
                    }
                    continue;
                }
                out.push_str("\\{");
                repeatable = true;
                after_quantifier = false;
            }
            '}' => {
                out.push_str("\\}");
                repeatable = true;
                after_quantifier = false;
            }
            '*' | '+' | '?' => {
                if after_quantifier && c == '+' {
                    return Err(unsupported(pattern, "a possessive quantifier"));
                }
                out.push(c);
                if after_quantifier && c == '?' {
                    // `*?`: lazy; nothing may follow.
                    after_quantifier = false;
                } else {
                    after_quantifier = true;
                }
                repeatable = false;
            }
            ')' | '.' | '^' | '$' => {
                out.push(c);
                repeatable = c != '^';
                after_quantifier = false;
            }
            '|' => {
                out.push(c);
                repeatable = false;
                after_quantifier = false;
            }
            _ => {
                out.push(c);
                repeatable = true;
                after_quantifier = false;
            }
        }
        i += 1;
    }
    Ok(out)
}

/// The index of the `}` closing a PCRE repetition (`{n}`, `{n,}`, `{n,m}`) that starts at `start`, if it is one.
fn quantifier_end(chars: &[char], start: usize) -> Option<usize> {
    let mut i = start + 1;
    let digits = |i: &mut usize| {
        let from = *i;
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        *i > from
    };
    if !digits(&mut i) {
        return None;
    }
    if chars.get(i) == Some(&',') {
        i += 1;
        digits(&mut i);
    }
    (chars.get(i) == Some(&'}')).then_some(i)
}

/// Copies a character class starting at `start` (`[`), returning the index after its `]`. PCRE reads a `]` first
/// in the class, a `[` that does not open a POSIX class, and `&&`/`--`/`~~` as literals; the `regex` crate reads
/// them as nesting and set operations, so they are escaped.
fn class(pattern: &str, chars: &[char], start: usize, out: &mut String) -> Result<usize, String> {
    let mut i = start + 1;
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    if chars.get(i) == Some(&']') {
        out.push_str("\\]");
        i += 1;
    }
    while i < chars.len() {
        let c = chars[i];
        match c {
            ']' => {
                out.push(']');
                return Ok(i + 1);
            }
            '\\' => {
                let Some(&e) = chars.get(i + 1) else { break };
                if e.is_ascii_digit() && e != '0' {
                    return Err(unsupported(pattern, &format!("the octal escape \\{e} in a class")));
                }
                out.push('\\');
                out.push(e);
                i += 2;
                if matches!(e, 'x' | 'p' | 'P') && chars.get(i) == Some(&'{') {
                    while i < chars.len() {
                        out.push(chars[i]);
                        i += 1;
                        if chars[i - 1] == '}' {
                            break;
                        }
                    }
                }
                continue;
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                // A POSIX class (`[:alpha:]`), which both read alike.
                while i < chars.len() {
                    out.push(chars[i]);
                    i += 1;
                    if chars[i - 1] == ']' {
                        break;
                    }
                }
                continue;
            }
            '[' => out.push_str("\\["),
            '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '-' if chars.get(i + 1) == Some(&'-') => out.push_str("\\-"),
            _ => out.push(c),
        }
        i += 1;
    }
    Err(format!("invalid regex: '{pattern}' (unclosed character class)"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn braces_that_are_not_repetitions_are_text() {
        let re = compile(r"/api/deposits/{depositAccountId}/blocks/(?<x>\w+)$").unwrap();
        let caps = re.captures("/api/deposits/{depositAccountId}/blocks/b42").unwrap();
        assert_eq!(&caps["x"], "b42");
        assert!(!re.is_match("/api/deposits/123/blocks/b42"), "the braces are literal, as PCRE reads them");
        for (pattern, subject, matches) in [
            (r"/v\d{1,2}/x", "/v12/x", true),
            (r"/v\d{1,2}/x", "/v123/x", false),
            (r"/a{2}", "/aa", true),
            (r"/a{2,}", "/aaaa", true),
            (r"/a{,2}", "/a{,2}", true),
            (r"/{", "/{", true),
            (r"/}", "/}", true),
            (r"/x{y}", "/x{y}", true),
            (r"/(a|{2})", "/{2}", true),
            (r"/[[]x", "/[x", true),
            (r"/[]a]", "/]", true),
            (r"/[a&&b]", "/&", true),
            (r"/[[:digit:]]+", "/42", true),
            (r"/\Qa.b{1}\E/c", "/a.b{1}/c", true),
            (r"/\Qa.b\E", "/axb", false),
            (r"/a(?#comment)b", "/ab", true),
            (r"/(?'id'\d+)", "/7", true),
            (r"/\/x", "//x", true),
            (r"/x\Z", "/x", true),
            (r"/a+?b", "/aab", true),
            (r"/\<x\>", "/<x>", true),
            (r"/(a1)", "/a1", true),
        ] {
            let re = compile(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(re.is_match(subject), matches, "{pattern} on {subject} (as {})", translate(pattern).unwrap());
        }
    }

    #[test]
    fn what_a_linear_time_engine_cannot_do_is_named() {
        for (pattern, what) in [
            (r"/(a)\1", "backreference"),
            (r"/(?<n>a)\k<n>", "backreference"),
            (r"/(?=a)", "look-ahead"),
            (r"/(?!a)", "look-ahead"),
            (r"/(?<=a)b", "look-behind"),
            (r"/(?<!a)b", "look-behind"),
            (r"/(?>a)", "atomic group"),
            (r"/a++", "possessive"),
            (r"/a{2}+", "possessive"),
            (r"/(?R)", "recursion"),
            (r"/(?(1)a|b)", "conditional"),
        ] {
            let e = compile(pattern).unwrap_err();
            assert!(e.contains(what) && e.contains(pattern), "{pattern}: {e}");
        }
        assert!(compile(r"/(a").unwrap_err().starts_with("invalid regex: '/(a'"));
        assert!(compile(r"/[a").unwrap_err().contains("unclosed"));
    }
}
