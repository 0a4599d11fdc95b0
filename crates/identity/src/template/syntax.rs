//! Kong Identity's `${ … }` claim syntax onto Go's `{{ … }}`.
//!
//! The scanner finds each action's closing `}` (skipping string, raw-string and character literals), classifies
//! it by its first word and checks the block structure itself, so structural errors carry an exact position and
//! the constructs gtmpl would recurse on without bound (`define`/`template`/`block`) never reach it. Output:
//! literal text as is (a literal `{{` escaped), printing actions piped through `_print`, a `_step` call at the top
//! of every `range` body (see `budget`), everything else verbatim.

use super::TemplateError;

/// `if`/`with`/`range` nesting, and parenthesis nesting inside one action: the parser recurses on both.
pub const MAX_NESTING: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Print,
    Decl,
    If,
    With,
    Range,
    ElseIf,
    Else,
    End,
    Comment,
}

#[derive(Debug, Clone)]
pub struct Action {
    /// 1-based character position of the `${`.
    pub position: usize,
    go: String,
    /// How many blocks are open after this action.
    open_after: usize,
}

/// The Go template text, built action by action so a parse error can be traced to the action that caused it.
#[derive(Debug)]
pub struct Translated {
    pub pieces: Vec<(String, Option<Action>)>,
}

impl Translated {
    /// The whole template.
    pub fn go(&self) -> String {
        self.prefix(self.pieces.len())
    }

    /// The first `n` pieces with the blocks still open closed, which parses exactly when the whole would parse
    /// up to that point.
    pub fn prefix(&self, n: usize) -> String {
        let mut out = String::new();
        let mut open = 0;
        for (text, action) in &self.pieces[..n] {
            out.push_str(text);
            if let Some(a) = action {
                out.push_str(&a.go);
                open = a.open_after;
            }
        }
        for _ in 0..open {
            out.push_str("{{end}}");
        }
        out
    }

    pub fn has_actions(&self) -> bool {
        self.pieces.iter().any(|(_, a)| a.is_some())
    }
}

fn error(position: usize, message: impl Into<String>) -> TemplateError {
    TemplateError { position, message: message.into() }
}

/// Byte index of the `}` closing the action whose body starts at `from`, skipping literals and comments.
fn action_end(s: &str, from: usize, position: usize) -> Result<usize, TemplateError> {
    let bytes = s.as_bytes();
    let (mut i, mut parens) = (from, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'}' => return Ok(i),
            b'"' | b'\'' => {
                let quote = bytes[i];
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n') => return Err(error(position, "unterminated quoted string")),
                        Some(b'\\') => i += 2,
                        Some(&c) if c == quote => break,
                        Some(_) => i += 1,
                    }
                }
            }
            b'`' => {
                i = s[i + 1..]
                    .find('`')
                    .map(|e| i + 1 + e)
                    .ok_or_else(|| error(position, "unterminated raw string"))?;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = s[i + 2..].find("*/").map(|e| i + 3 + e).ok_or_else(|| error(position, "unclosed comment"))?;
            }
            b'(' => {
                parens += 1;
                if parens > MAX_NESTING {
                    return Err(error(position, format!("parentheses nested deeper than {MAX_NESTING}")));
                }
            }
            b')' => parens = parens.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Err(error(position, "unclosed action: missing }"))
}

fn first_word(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

fn is_decl(core: &str) -> bool {
    let mut rest = core;
    loop {
        let Some(after) = rest.strip_prefix('$') else { return false };
        let name_end = after.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(after.len());
        rest = after[name_end..].trim_start();
        if rest.starts_with(":=") || (rest.starts_with('=') && !rest.starts_with("==")) {
            return true;
        }
        match rest.strip_prefix(',') {
            Some(r) => rest = r.trim_start(),
            None => return false,
        }
    }
}

fn classify(core: &str, position: usize) -> Result<Kind, TemplateError> {
    if core.starts_with("/*") {
        return Ok(Kind::Comment);
    }
    Ok(match first_word(core) {
        "if" => Kind::If,
        "with" => Kind::With,
        "range" => Kind::Range,
        "end" => Kind::End,
        "else" => {
            let rest = core["else".len()..].trim_start();
            if rest.is_empty() { Kind::Else } else { Kind::ElseIf }
        }
        word @ ("define" | "template" | "block" | "break" | "continue") => {
            return Err(error(position, format!("`{word}` is not supported in claim templates")));
        }
        _ if core.is_empty() => return Err(error(position, "empty action")),
        _ if is_decl(core) => Kind::Decl,
        _ => Kind::Print,
    })
}

pub fn translate(value: &str) -> Result<Translated, TemplateError> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut stack: Vec<(Kind, usize)> = Vec::new();
    let mut rest_start = 0;
    let mut chars_before = 0; // characters of `value` before `rest_start`
    while let Some(found) = value[rest_start..].find("${") {
        let start = rest_start + found;
        literal.push_str(&value[rest_start..start].replace("{{", "{{\"{{\"}}"));
        let position = chars_before + value[rest_start..start].chars().count() + 1;
        let end = action_end(value, start + 2, position)?;
        let inner = &value[start + 2..end];
        let trim_left = inner.starts_with("- ") || inner.starts_with("-\t") || inner.starts_with("-\n");
        let trim_right = inner.ends_with(" -") || inner.ends_with("\t-") || inner.ends_with("\n-");
        let core = inner[if trim_left { 1 } else { 0 }..inner.len() - if trim_right { 1 } else { 0 }].trim();
        let kind = classify(core, position)?;
        let (l, r) = (if trim_left { "- " } else { "" }, if trim_right { " -" } else { "" });
        let go = match kind {
            Kind::Print => format!("{{{{{l}{core} | _print{r}}}}}"),
            Kind::Range => {
                // The step marker sits where the user's right trim would act, so it takes over that trim.
                let marker = if trim_right { "{{- _step -}}" } else { "{{_step}}" };
                format!("{{{{{l}{core}}}}}{marker}")
            }
            Kind::Comment => String::new(),
            _ => format!("{{{{{l}{core}{r}}}}}"),
        };
        match kind {
            Kind::If | Kind::With | Kind::Range => {
                stack.push((kind, position));
                if stack.len() > MAX_NESTING {
                    return Err(error(position, format!("blocks nested deeper than {MAX_NESTING}")));
                }
            }
            Kind::Else | Kind::ElseIf => match stack.last() {
                Some((Kind::If | Kind::With | Kind::Range, _)) => {}
                _ => return Err(error(position, "unexpected else")),
            },
            Kind::End => {
                if stack.pop().is_none() {
                    return Err(error(position, "unexpected end"));
                }
            }
            Kind::Print | Kind::Decl | Kind::Comment => {}
        }
        pieces.push((std::mem::take(&mut literal), Some(Action { position, go, open_after: stack.len() })));
        chars_before += value[rest_start..=end].chars().count();
        rest_start = end + 1;
    }
    if let Some((kind, position)) = stack.last() {
        let word = match kind {
            Kind::If => "if",
            Kind::With => "with",
            _ => "range",
        };
        return Err(error(*position, format!("unclosed {word}: missing ${{ end }}")));
    }
    literal.push_str(&value[rest_start..].replace("{{", "{{\"{{\"}}"));
    pieces.push((literal, None));
    Ok(Translated { pieces })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn translation() {
        let t = translate("a ${ .Client.Name }-${ if .X }y${ else }n${ end }{{").unwrap();
        assert_eq!(t.go(), "a {{.Client.Name | _print}}-{{if .X}}y{{else}}n{{end}}{{\"{{\"}}");
        let t = translate("${ range $i := .L -} x ${- end }").unwrap();
        assert_eq!(t.go(), "{{range $i := .L}}{{- _step -}} x {{- end}}");
        assert_eq!(translate("${ $x := 1 }${ /* c */ }").unwrap().go(), "{{$x := 1}}");
        assert_eq!(translate("${ \"}\" }").unwrap().go(), "{{\"}\" | _print}}");
        assert_eq!(translate("plain").unwrap().go(), "plain");
        assert!(!translate("plain").unwrap().has_actions());
    }

    #[test]
    fn structural_errors_have_positions() {
        let e = |s: &str| translate(s).unwrap_err();
        assert_eq!(e("ab${ .x").position, 3);
        assert_eq!(e("é${ end }").position, 2);
        assert_eq!(e("${ if .x }${ if .y }${ end }").position, 1);
        assert_eq!(e("x${ else }").position, 2);
        assert_eq!(e("${ }").message, "empty action");
        assert!(e("${ define \"a\" }${ end }").message.contains("not supported"));
        assert!(e("${ template \"a\" }").message.contains("not supported"));
        assert!(e(&format!("${{ {} }}", "(".repeat(40))).message.contains("parentheses"));
        assert!(e(&"${ if 1 }".repeat(40)).message.contains("nested"));
        assert_eq!(e("${ \"abc }").message, "unterminated quoted string");
    }
}
