//! pg_hba.conf text into lines of fields: whitespace-separated fields, `"quoted"` fields, `#`
//! comments, comma-separated lists of databases and users. Shared by the access rules
//! ([`super::Rules`]) and `sluice import-pgbouncer` (which maps an `auth_hba_file` to settings).

/// One rule line as written (nothing interpreted beyond the connection type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// `local`, `host`, `hostssl`, `hostnossl` (lower case).
    pub kind: String,
    pub databases: Vec<String>,
    pub users: Vec<String>,
    /// `None` for `local`; `all`, `a.b.c.d/n`, or `a.b.c.d m.a.s.k` joined with a space.
    pub address: Option<String>,
    /// Lower case.
    pub method: String,
    /// 1-based line number in its text.
    pub line: usize,
}

/// Parses pg_hba.conf text; errors say `{file}:{line}: why`.
pub fn parse(file: &str, text: &str) -> Result<Vec<Line>, String> {
    let mut rules = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let at = format!("{file}:{}", i + 1);
        let fields = fields(raw).map_err(|e| format!("{at}: {e}"))?;
        if fields.is_empty() {
            continue;
        }
        rules.push(line_of(&fields, i + 1).map_err(|e| format!("{at}: {e}"))?);
    }
    Ok(rules)
}

fn line_of(fields: &[String], line: usize) -> Result<Line, String> {
    let kind = fields[0].to_ascii_lowercase();
    if !matches!(kind.as_str(), "local" | "host" | "hostssl" | "hostnossl") {
        return Err(format!("unknown connection type {:?}", fields[0]));
    }
    let need = if kind == "local" { 4 } else { 5 };
    if fields.len() < need {
        return Err(format!("expected at least {need} fields"));
    }
    let (address, method_at) = if kind == "local" {
        (None, 3)
    } else if fields.len() > 5 && looks_like_mask(&fields[4]) {
        (Some(format!("{} {}", fields[3], fields[4])), 5)
    } else {
        (Some(fields[3].clone()), 4)
    };
    Ok(Line {
        kind,
        databases: list(&fields[1]),
        users: list(&fields[2]),
        address,
        method: fields[method_at].to_ascii_lowercase(),
        line,
    })
}

/// A comma-separated list, trimmed, empty items dropped.
fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn looks_like_mask(f: &str) -> bool {
    f.parse::<std::net::Ipv4Addr>().is_ok()
        || (f.contains(':') && f.parse::<std::net::Ipv6Addr>().is_ok())
}

/// The fields of one line (comments removed; quotes removed, and kept within a field).
fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_field = false;
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_field = true;
            }
            '#' if !quoted => break,
            c if c.is_whitespace() && !quoted => {
                if in_field {
                    out.push(std::mem::take(&mut cur));
                    in_field = false;
                }
            }
            c => {
                cur.push(c);
                in_field = true;
            }
        }
    }
    if quoted {
        return Err("unterminated \"".into());
    }
    if in_field {
        out.push(cur);
    }
    Ok(out)
}
