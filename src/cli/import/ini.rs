//! PgBouncer's configuration file format: `[section]` headers, `key = value` lines, comments
//! starting with `;` or `#` (only at the start of a line), and `%include FILE` directives.
//!
//! Also the two small languages inside values: a database's connection string
//! (`host=db1 port=5432 dbname='my db'`) and a comma-separated list (`admin_users = a, b`).
//!
//! Pure: files are read through the caller's `read` function, so the tests need no disk.

use std::fmt;

/// Where a line came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Lower case (`pgbouncer`, `databases`, `users`, `peers`).
    pub section: String,
    /// In `[pgbouncer]` lower case (PgBouncer's keys are case-insensitive); elsewhere the
    /// database or user name as written, double quotes removed.
    pub key: String,
    pub value: String,
    pub origin: Origin,
}

/// A whole file with its includes, in reading order (a later entry for the same key wins, as in
/// PgBouncer).
#[derive(Debug, Clone, Default)]
pub struct Ini {
    pub entries: Vec<Entry>,
}

impl Ini {
    /// The value in force for `key` of `section` (the last one read).
    pub fn get(&self, section: &str, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.section == section && e.key == key)
    }

    /// The entries of `section` in force: one per key, the last one read, in order of first
    /// appearance.
    pub fn section(&self, section: &str) -> Vec<&Entry> {
        let mut keys: Vec<&str> = Vec::new();
        for e in self.entries.iter().filter(|e| e.section == section) {
            if !keys.contains(&e.key.as_str()) {
                keys.push(&e.key);
            }
        }
        keys.iter().filter_map(|k| self.get(section, k)).collect()
    }
}

/// Reads a file: `Ok((name for messages, text))` or why not. `from` is the file that names it
/// in a `%include` (`None` for the top file).
pub type Reader<'a> = dyn FnMut(&str, Option<&str>) -> Result<(String, String), String> + 'a;

/// How deep `%include`s may nest (a file that includes itself stops here).
const MAX_DEPTH: usize = 10;

/// Parses `path` and everything it includes.
pub fn load(path: &str, read: &mut Reader<'_>) -> Result<Ini, String> {
    let mut ini = Ini::default();
    let mut section = String::new();
    load_into(path, None, read, &mut ini, &mut section, 0)?;
    Ok(ini)
}

fn load_into(
    path: &str,
    from: Option<&str>,
    read: &mut Reader<'_>,
    ini: &mut Ini,
    section: &mut String,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "{path}: %include nested more than {MAX_DEPTH} deep (does a file include itself?)"
        ));
    }
    let (name, text) = read(path, from)?;
    for (i, raw) in text.lines().enumerate() {
        let origin = Origin {
            file: name.clone(),
            line: i + 1,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(target) = line.strip_prefix("%include") {
            let target = target.trim();
            if target.is_empty() {
                return Err(format!("{origin}: %include without a file name"));
            }
            // An included file continues the section it is included in.
            load_into(target, Some(&name), read, ini, section, depth + 1)
                .map_err(|e| format!("{e}\n  (included from {origin})"))?;
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(format!("{origin}: a section header must end with ]"));
            };
            *section = name.trim().to_ascii_lowercase();
            continue;
        }
        let Some((key, value)) = split_key(line) else {
            return Err(format!("{origin}: expected key = value, found {line:?}"));
        };
        if section.is_empty() {
            return Err(format!("{origin}: {key} is outside any [section]"));
        }
        let key = if section == "pgbouncer" {
            key.to_ascii_lowercase()
        } else {
            key
        };
        ini.entries.push(Entry {
            section: section.clone(),
            key,
            value: value.trim().to_owned(),
            origin,
        });
    }
    Ok(())
}

/// `key = value`, where a database or user name may be written `"quoted"` (with `""` for a
/// quote) and so contain `=`.
fn split_key(line: &str) -> Option<(String, &str)> {
    if let Some(rest) = line.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '"' {
                if chars.peek().map(|&(_, c)| c) == Some('"') {
                    chars.next();
                    name.push('"');
                    continue;
                }
                let after = rest[i + 1..].trim_start();
                return after.strip_prefix('=').map(|v| (name, v));
            }
            name.push(c);
        }
        return None;
    }
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| (key.to_owned(), value))
}

/// A connection string's `key=value` pairs in order. Values may be `'quoted'` (with `\'` or
/// `''` for a quote and `\\` for a backslash); spaces around `=` are allowed.
pub fn connstr(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("expected key=value at {rest:?}"))?;
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("expected key=value at {rest:?}"));
        }
        rest = rest[eq + 1..].trim_start();
        let value;
        if let Some(quoted) = rest.strip_prefix('\'') {
            let mut v = String::new();
            let mut chars = quoted.char_indices().peekable();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '\'' if chars.peek().map(|&(_, c)| c) == Some('\'') => {
                        chars.next();
                        v.push('\'');
                    }
                    '\'' => {
                        end = Some(i + 1);
                        break;
                    }
                    _ => v.push(c),
                }
            }
            let end = end.ok_or_else(|| format!("unterminated quote in the value of {key}"))?;
            value = v;
            rest = &quoted[end..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            value = rest[..end].to_owned();
            rest = &rest[end..];
        }
        out.push((key.to_ascii_lowercase(), value));
        rest = rest.trim_start();
    }
    Ok(out)
}

/// A comma-separated list (`admin_users = a, b`), empty items dropped.
pub fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// PgBouncer's booleans: `1`/`0`, `yes`/`no`, `on`/`off`, `true`/`false`.
pub fn boolean(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "yes" | "on" | "true" => Some(true),
        "0" | "no" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// A time setting: seconds, possibly fractional (`120`, `0.5`), or with a unit (`500ms`,
/// `2min`, `1h`).
pub fn seconds(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "us" => 1e-6,
        "ms" => 1e-3,
        "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    let secs = n * scale;
    (secs.is_finite() && secs >= 0.0).then(|| std::time::Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn files(list: &[(&str, &str)]) -> HashMap<String, String> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_from(fs: &HashMap<String, String>, top: &str) -> Result<Ini, String> {
        load(top, &mut |path: &str, _from: Option<&str>| {
            fs.get(path)
                .map(|t| (path.to_owned(), t.clone()))
                .ok_or_else(|| format!("{path}: no such file"))
        })
    }

    #[test]
    fn sections_comments_includes_and_overrides() {
        let fs = files(&[
            (
                "main.ini",
                "; comment\n[databases]\napp = host=db1\n\"odd=name\" = host=db2\n\
                 [pgbouncer]\nListen_Port = 6432\n# another comment\n%include extra.ini\n\
                 pool_mode = transaction\n",
            ),
            ("extra.ini", "pool_mode = session\nlisten_port=7432\n"),
        ]);
        let ini = load_from(&fs, "main.ini").unwrap();
        assert_eq!(ini.get("databases", "app").unwrap().value, "host=db1");
        assert_eq!(ini.get("databases", "odd=name").unwrap().value, "host=db2");
        // The include continues [pgbouncer]; its port wins over the earlier line, and the line
        // after the include wins over the include.
        let port = ini.get("pgbouncer", "listen_port").unwrap();
        assert_eq!(
            (
                port.value.as_str(),
                port.origin.file.as_str(),
                port.origin.line
            ),
            ("7432", "extra.ini", 2)
        );
        assert_eq!(
            ini.get("pgbouncer", "pool_mode").unwrap().value,
            "transaction"
        );
        let keys: Vec<&str> = ini
            .section("pgbouncer")
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys, ["listen_port", "pool_mode"]);
    }

    #[test]
    fn errors_say_where() {
        let fs = files(&[
            ("a.ini", "[pgbouncer]\n%include b.ini\n"),
            ("b.ini", "[pgbouncer\n"),
            ("loop.ini", "%include loop.ini\n"),
            ("orphan.ini", "x = 1\n"),
            ("missing.ini", "[pgbouncer]\n%include nowhere.ini\n"),
        ]);
        let e = load_from(&fs, "a.ini").unwrap_err();
        assert!(
            e.starts_with("b.ini:1:") && e.contains("included from a.ini:2"),
            "{e}"
        );
        let e = load_from(&fs, "loop.ini").unwrap_err();
        assert!(e.contains("nested more than"), "{e}");
        let e = load_from(&fs, "orphan.ini").unwrap_err();
        assert!(e.contains("orphan.ini:1: x is outside"), "{e}");
        let e = load_from(&fs, "missing.ini").unwrap_err();
        assert!(e.contains("nowhere.ini: no such file"), "{e}");
    }

    #[test]
    fn connection_strings() {
        assert_eq!(
            connstr("host=db1  port = 5433 dbname='my ''big'' db' password='a\\'b\\\\c'").unwrap(),
            [
                ("host".to_owned(), "db1".to_owned()),
                ("port".to_owned(), "5433".to_owned()),
                ("dbname".to_owned(), "my 'big' db".to_owned()),
                ("password".to_owned(), "a'b\\c".to_owned()),
            ]
        );
        assert_eq!(connstr("").unwrap(), []);
        assert!(connstr("host").is_err());
        assert!(connstr("host='db1").is_err());
        assert!(connstr("=x").is_err());
    }

    #[test]
    fn values() {
        assert_eq!(list(" a, b ,,c "), ["a", "b", "c"]);
        assert_eq!(boolean("Yes"), Some(true));
        assert_eq!(boolean("0"), Some(false));
        assert_eq!(boolean("maybe"), None);
        use std::time::Duration;
        assert_eq!(seconds("120"), Some(Duration::from_secs(120)));
        assert_eq!(seconds("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(seconds("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(seconds("2min"), Some(Duration::from_secs(120)));
        assert_eq!(seconds("soon"), None);
        assert_eq!(seconds("-1"), None);
    }
}
