//! A located YAML tree for the importers, built from saphyr-parser's events.
//!
//! Scalars are kept as the text written (no YAML typing), because the proxies whose configs are read interpret
//! scalars themselves: twemproxy (libyaml) reads `redis_auth: 12345` as the string "12345" and `redis: true` by
//! comparing the text with "true". Every node carries the line and column where it starts, so that an error about a
//! value names its line, not only syntax errors do.

use saphyr_parser::{Event, Parser, Span, SpannedEventReceiver};

use super::ImportError;

/// Where a node starts: 1-based line, 1-based column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    fn of(span: &Span) -> Pos {
        Pos { line: span.start.line(), column: span.start.col() + 1 }
    }

    /// An error located here.
    pub fn error(self, message: impl Into<String>) -> ImportError {
        ImportError::at(self.line, self.column, message)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// The scalar's text, unquoted and unescaped; `quoted` tells `'x'`/`"x"` from a plain `x`.
    Scalar {
        text: String,
        quoted: bool,
        pos: Pos,
    },
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    /// Entries in the order written; keys are scalars.
    Map {
        entries: Vec<(String, Pos, Node)>,
        pos: Pos,
    },
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Scalar { pos, .. } | Node::Seq { pos, .. } | Node::Map { pos, .. } => *pos,
        }
    }

    /// What kind of node this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Scalar { .. } => "a scalar",
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a mapping",
        }
    }

    /// The scalar's text, or an error naming `what` was expected.
    pub fn scalar(&self, what: &str) -> Result<&str, ImportError> {
        match self {
            Node::Scalar { text, .. } => Ok(text),
            other => Err(other.pos().error(format!("{what}: expected a value, found {}", other.kind()))),
        }
    }

    /// The value of `key` in a mapping (the importers walk entries in order; tests look values up).
    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map { entries, .. } => entries.iter().find(|(k, _, _)| k == key).map(|(_, _, v)| v),
            _ => None,
        }
    }
}

/// Parses one YAML document (an empty stream is an empty mapping). Anchors and aliases are refused: neither
/// twemproxy's nor Envoy's configs need them, and refusing them keeps a line number meaningful.
pub fn parse(text: &str) -> Result<Node, ImportError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, true).map_err(|err| {
        let mark = err.marker();
        ImportError::at(mark.line(), mark.col() + 1, format!("YAML syntax: {}", err.info()))
    })?;
    if let Some(err) = builder.error {
        return Err(err);
    }
    match builder.documents.len() {
        0 => Ok(Node::Map { entries: Vec::new(), pos: Pos { line: 1, column: 1 } }),
        1 => Ok(builder.documents.remove(0)),
        _ => Err(builder.documents[1].pos().error("more than one YAML document; expected one")),
    }
}

/// A container under construction.
enum Open {
    Seq(Vec<Node>, Pos),
    /// Entries so far, and a key read whose value is pending.
    Map(Vec<(String, Pos, Node)>, Option<(String, Pos)>, Pos),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    documents: Vec<Node>,
    error: Option<ImportError>,
}

impl Builder {
    fn fail(&mut self, pos: Pos, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(pos.error(message));
        }
    }

    /// Adds a finished node to the container on top, or makes it a document.
    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => self.documents.push(node),
            Some(Open::Seq(items, _)) => items.push(node),
            Some(Open::Map(entries, pending, _)) => match pending.take() {
                Some((key, key_pos)) => {
                    if entries.iter().any(|(k, _, _)| *k == key) {
                        let message = format!("key `{key}` appears twice in this mapping");
                        self.fail(key_pos, message);
                        return;
                    }
                    entries.push((key, key_pos, node));
                }
                None => match node {
                    Node::Scalar { text, pos, .. } => *pending = Some((text, pos)),
                    other => self.fail(other.pos(), "a mapping key must be a plain value"),
                },
            },
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, event: Event<'input>, span: Span) {
        let pos = Pos::of(&span);
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                if anchor != 0 {
                    self.fail(pos, "YAML anchors are not supported");
                }
                let quoted = !matches!(style, saphyr_parser::ScalarStyle::Plain);
                self.push(Node::Scalar { text: text.into_owned(), quoted, pos });
            }
            Event::Alias(_) => self.fail(pos, "YAML aliases (*name) are not supported; write the value out"),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) if anchor != 0 => {
                self.fail(pos, "YAML anchors are not supported");
                let open = if matches!(event, Event::SequenceStart(..)) {
                    Open::Seq(Vec::new(), pos)
                } else {
                    Open::Map(Vec::new(), None, pos)
                };
                self.stack.push(open);
            }
            Event::SequenceStart(..) => self.stack.push(Open::Seq(Vec::new(), pos)),
            Event::MappingStart(..) => self.stack.push(Open::Map(Vec::new(), None, pos)),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq(items, pos)) => self.push(Node::Seq { items, pos }),
                Some(Open::Map(entries, _, pos)) => self.push(Node::Map { entries, pos }),
                None => {}
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart(_) | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_keep_their_text_and_position() {
        let doc =
            parse("a:\n  listen: 127.0.0.1:22121\n  redis_auth: 012\n  tag: \"{}\"\n  s:\n   - x:1:1 n\n").unwrap();
        let a = doc.get("a").unwrap();
        assert_eq!(a.get("redis_auth").unwrap().scalar("x").unwrap(), "012");
        let tag = a.get("tag").unwrap();
        assert!(matches!(tag, Node::Scalar { text, quoted: true, pos } if text == "{}" && pos.line == 4));
        let Node::Seq { items, .. } = a.get("s").unwrap() else { panic!() };
        assert_eq!(items[0].scalar("x").unwrap(), "x:1:1 n");
        assert_eq!(items[0].pos(), Pos { line: 6, column: 6 });
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("a:\n  b: 1\n c: [\n").unwrap_err();
        assert!(err.line.is_some(), "{err}");
        let err = parse("a:\n  b: 1\n  b: 2\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(err.to_string().contains("appears twice"), "{err}");
        let err = parse("a: &x 1\nb: *x\n").unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(parse("").unwrap().get("x").is_none());
    }
}
