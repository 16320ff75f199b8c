//! PgBouncer's `auth_file` (userlist.txt): one user per line, `"name" "secret"`, each field in
//! double quotes with `""` for a quote inside; the rest of the line is ignored, and so are lines
//! that do not start with a quote (comments).
//!
//! The secret is a plain password, `md5<hex>` or `SCRAM-SHA-256$...`, exactly what sluice's
//! `[users.NAME] password` takes.

use super::ini::Origin;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    pub name: String,
    pub secret: String,
    pub origin: Origin,
}

/// The users of `text` (file name `file`, for messages), in order; a later line for the same
/// user replaces an earlier one.
pub fn parse(file: &str, text: &str) -> Result<Vec<UserEntry>, String> {
    let mut out: Vec<UserEntry> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let origin = Origin {
            file: file.to_owned(),
            line: i + 1,
        };
        let line = raw.trim_start();
        if !line.starts_with('"') {
            continue;
        }
        let (name, rest) = quoted(line).ok_or_else(|| format!("{origin}: unterminated \""))?;
        let rest = rest.trim_start();
        if !rest.starts_with('"') {
            return Err(format!(
                "{origin}: expected \"{name}\" \"password\", found no quoted password"
            ));
        }
        let (secret, _) = quoted(rest).ok_or_else(|| format!("{origin}: unterminated \""))?;
        if name.is_empty() {
            return Err(format!("{origin}: empty user name"));
        }
        out.retain(|u| u.name != name);
        out.push(UserEntry {
            name,
            secret,
            origin,
        });
    }
    Ok(out)
}

/// The `"..."` at the start of `s` (which starts with `"`) and what follows it.
fn quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if chars.peek().map(|&(_, c)| c) == Some('"') {
                chars.next();
                out.push('"');
                continue;
            }
            return Some((out, &body[i + 1..]));
        }
        out.push(c);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_secrets_comments_and_escapes() {
        let text = ";; users\n\
                    \"app\" \"plain pw\"\n\
                    \"quote\"\"d\" \"md5a3556571e93b0d20722ba62be61e8c2d\" extra ignored\n\
                    # not a user\n\
                    \"app\" \"SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy\"\n";
        let users = parse("userlist.txt", text).unwrap();
        let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["quote\"d", "app"]);
        assert_eq!(users[0].secret, "md5a3556571e93b0d20722ba62be61e8c2d");
        assert!(users[1].secret.starts_with("SCRAM-SHA-256$"));
        assert_eq!(users[1].origin.line, 5);
    }

    #[test]
    fn malformed_lines_are_errors_with_their_place() {
        let e = parse("u.txt", "\"app\" plain\n").unwrap_err();
        assert!(e.starts_with("u.txt:1:"), "{e}");
        let e = parse("u.txt", "\n\"app\" \"open\n").unwrap_err();
        assert!(e.starts_with("u.txt:2:"), "{e}");
    }
}
