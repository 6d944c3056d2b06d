//! The converted config as it is written: TOML tables with comments explaining what changed.
//!
//! Kept separate from the importers so that every source proxy writes the same layout (`[proxy]`, then each
//! `[listeners.*]`, then each `[pools.*]`, then each `[routes.*]`), and so that values are always quoted by the toml crate rather than by hand.

use toml::Value;

/// One line of a table: a key with its value, or a comment.
enum Line {
    Key { key: String, value: Value, notes: Vec<String> },
    Note(String),
}

/// One `[path]` table.
pub struct Table {
    path: String,
    notes: Vec<String>,
    lines: Vec<Line>,
}

impl Table {
    pub fn new(path: impl Into<String>) -> Table {
        Table { path: path.into(), notes: Vec::new(), lines: Vec::new() }
    }

    /// Names the table (importers build a route's table before they know its name).
    pub fn set_path(&mut self, path: impl Into<String>) {
        self.path = path.into();
    }

    /// `key = value` as the table's first line (a route's `type`, decided after its other keys).
    pub fn set_first(&mut self, key: &str, value: impl Into<Value>) {
        self.lines.insert(0, Line::Key { key: key.to_owned(), value: value.into(), notes: Vec::new() });
    }

    /// A comment above the table header.
    pub fn note_above(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.set_noted(key, value, None::<String>);
    }

    /// `key = value` with a comment above it.
    pub fn set_noted(&mut self, key: &str, value: impl Into<Value>, note: Option<impl Into<String>>) {
        let notes = note.map(Into::into).into_iter().collect();
        self.lines.push(Line::Key { key: key.to_owned(), value: value.into(), notes });
    }

    /// A comment line at this point of the table.
    pub fn note(&mut self, note: impl Into<String>) {
        self.lines.push(Line::Note(note.into()));
    }

    fn has_content(&self) -> bool {
        !self.lines.is_empty() || !self.notes.is_empty()
    }
}

/// The whole converted file.
pub struct Document {
    header: Vec<String>,
    pub proxy: Table,
    pub listeners: Vec<Table>,
    pub pools: Vec<Table>,
    pub routes: Vec<Table>,
}

impl Document {
    pub fn new() -> Document {
        Document {
            header: Vec::new(),
            proxy: Table::new("proxy"),
            listeners: Vec::new(),
            pools: Vec::new(),
            routes: Vec::new(),
        }
    }

    /// A comment at the top of the file.
    pub fn header(&mut self, note: impl Into<String>) {
        self.header.push(note.into());
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for note in &self.header {
            comment(&mut out, note);
        }
        let tables = std::iter::once(&self.proxy).chain(&self.listeners).chain(&self.pools).chain(&self.routes);
        for table in tables.filter(|t| t.has_content()) {
            out.push('\n');
            for note in &table.notes {
                comment(&mut out, note);
            }
            out.push('[');
            out.push_str(&table.path);
            out.push_str("]\n");
            for line in &table.lines {
                match line {
                    Line::Note(note) => comment(&mut out, note),
                    Line::Key { key, value, notes } => {
                        for note in notes {
                            comment(&mut out, note);
                        }
                        out.push_str(key);
                        out.push_str(" = ");
                        out.push_str(&render_value(value));
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

impl Default for Document {
    fn default() -> Self {
        Document::new()
    }
}

/// Arrays of several items one per line, so that long server lists stay readable and diffable.
fn render_value(value: &Value) -> String {
    match value {
        Value::Array(items) if items.len() > 1 => {
            let mut out = String::from("[\n");
            for item in items {
                out.push_str("    ");
                out.push_str(&item.to_string());
                out.push_str(",\n");
            }
            out.push(']');
            out
        }
        other => other.to_string(),
    }
}

/// `note` as `# ` lines, one per line of the note.
fn comment(out: &mut String, note: &str) {
    for line in note.lines() {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
}

/// A name usable as a bare TOML key and as a ferrule listener or pool name (letters, digits, `_`, `-`); `None` when
/// `name` already is one.
pub fn sanitized_name(name: &str) -> Option<String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !name.is_empty() && name.chars().all(valid) {
        return None;
    }
    let cleaned: String = name.chars().map(|c| if valid(c) { c } else { '_' }).collect();
    Some(if cleaned.is_empty() { "pool".to_owned() } else { cleaned })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables_with_comments_and_parses_back() {
        let mut doc = Document::new();
        doc.header("converted\nsecond line");
        doc.proxy.set("stats_port", "127.0.0.1:22222");
        let mut pool = Table::new("pools.main");
        pool.note_above("from pool main");
        pool.set("servers", Value::Array(vec!["a:1:1".into(), "b:1:1 \"x\"".into()]));
        pool.set_noted("timeout_ms", 400, Some("twemproxy: timeout"));
        pool.note("tcpkeepalive: not supported");
        doc.pools.push(pool);
        let mut route = Table::new("routes.by_prefix");
        let prefixes: toml::Table = [("/a/b/".to_owned(), Value::from("main"))].into_iter().collect();
        route.set("prefixes", Value::Table(prefixes));
        doc.routes.push(route);
        let text = doc.render();
        assert!(text.starts_with("# converted\n# second line\n"), "{text}");
        assert!(text.contains("# from pool main\n[pools.main]\n"), "{text}");
        assert!(text.contains("# twemproxy: timeout\ntimeout_ms = 400\n"), "{text}");
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed["pools"]["main"]["servers"][1].as_str(), Some("b:1:1 \"x\""));
        assert_eq!(parsed["proxy"]["stats_port"].as_str(), Some("127.0.0.1:22222"));
        assert_eq!(parsed["routes"]["by_prefix"]["prefixes"]["/a/b/"].as_str(), Some("main"), "{text}");
        assert!(text.find("[pools.main]") < text.find("[routes.by_prefix]"), "{text}");
    }

    #[test]
    fn names_are_made_usable() {
        assert_eq!(sanitized_name("alpha-1_b"), None);
        assert_eq!(sanitized_name("my.pool"), Some("my_pool".to_owned()));
        assert_eq!(sanitized_name(""), Some("pool".to_owned()));
    }
}
