//! A small TOML writer for the imported config: tables in the order they were made, keys in the
//! order they were set, a comment after a value where it helps. (The toml crate's serializer
//! writes no comments.)

/// One `key = value` line, with a comment after it or not.
struct Line {
    key: String,
    value: toml::Value,
    comment: Option<String>,
}

/// The document: leading comments, then tables.
#[derive(Default)]
pub struct Doc {
    header: Vec<String>,
    tables: Vec<(String, Vec<Line>)>,
}

impl Doc {
    /// A comment line before the first table.
    pub fn comment(&mut self, text: &str) {
        self.header.push(text.to_owned());
    }

    /// Starts `[name]` (`name` already quoted where needed, see [`key`]).
    pub fn table(&mut self, name: &str) {
        self.tables.push((name.to_owned(), Vec::new()));
    }

    /// `key = value` in the current table.
    pub fn kv(&mut self, key: &str, value: toml::Value, comment: Option<&str>) {
        let line = Line {
            key: key.to_owned(),
            value,
            comment: comment.map(str::to_owned),
        };
        match self.tables.last_mut() {
            Some((_, lines)) => lines.push(line),
            None => self.tables.push(("pooler".into(), vec![line])),
        }
    }

    /// `key = value` in `[pooler]`, wherever the document is.
    pub fn pooler_kv(&mut self, k: &str, value: toml::Value) {
        let line = Line {
            key: k.to_owned(),
            value,
            comment: None,
        };
        match self.tables.iter_mut().find(|(n, _)| n == "pooler") {
            Some((_, lines)) => lines.push(line),
            None => self.tables.insert(0, ("pooler".into(), vec![line])),
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for h in &self.header {
            out.push_str("# ");
            out.push_str(h);
            out.push('\n');
        }
        for (name, lines) in &self.tables {
            out.push_str(&format!("\n[{name}]\n"));
            for Line {
                key: k,
                value,
                comment,
            } in lines
            {
                out.push_str(&format!("{} = {}", key(k), value_text(value)));
                if let Some(c) = comment {
                    out.push_str("  # ");
                    out.push_str(c);
                }
                out.push('\n');
            }
        }
        out
    }
}

/// A value as TOML writes it inline.
fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(value_text).collect();
            format!("[{}]", inner.join(", "))
        }
        other => other.to_string(),
    }
}

/// A key, bare when TOML allows it, quoted otherwise.
pub fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if bare {
        name.to_owned()
    } else {
        toml::Value::String(name.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_tables_quoting_and_comments_and_parses_back() {
        let mut d = Doc::default();
        d.comment("made by a test");
        d.table("pooler");
        d.kv("listen", "127.0.0.1:6432".into(), Some("from listen_addr"));
        d.table(&format!("users.{}", key("odd \"name\".x")));
        d.kv("password", "p\"w\\".into(), None);
        d.pooler_kv(
            "admin_users",
            toml::Value::Array(vec!["odd \"name\".x".into()]),
        );
        let text = d.render();
        assert!(text.starts_with("# made by a test\n"), "{text}");
        let t: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(t["pooler"]["listen"].as_str(), Some("127.0.0.1:6432"));
        assert_eq!(
            t["pooler"]["admin_users"][0].as_str(),
            Some("odd \"name\".x")
        );
        assert_eq!(
            t["users"]["odd \"name\".x"]["password"].as_str(),
            Some("p\"w\\")
        );
        assert_eq!(key("app_1-x"), "app_1-x");
        assert_eq!(key("my db"), "\"my db\"");
    }
}
