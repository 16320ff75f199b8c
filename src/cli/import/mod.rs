//! `sluice import-pgbouncer pgbouncer.ini [userlist.txt] [-o sluice.toml]`.
//!
//! Reads PgBouncer's configuration (with its `%include`s, its auth file and, for
//! `auth_type = hba`, its HBA file), writes an equivalent sluice.toml to stdout or `-o FILE`, and
//! lists on stderr (and at the end of the file, as comments) every setting it could not carry
//! over and why, with the nearest sluice setting where there is one. The output is checked as
//! `sluice --check` would check it before it is written.
//!
//! Files named inside pgbouncer.ini (`%include`, `auth_file`, `auth_hba_file`) are found as
//! PgBouncer finds them, relative to the current directory, and failing that relative to the
//! directory of the file that names them.
//!
//! The parts: [`ini`] (the file format, connection strings), [`userlist`] (the auth file),
//! [`hba`] (the HBA file and what it comes to in sluice), [`map`] (the mapping, pure),
//! [`toml_out`] (the writer).

pub mod hba;
pub mod ini;
pub mod map;
pub mod toml_out;
pub mod userlist;

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{EXIT_UNAVAILABLE, EXIT_USAGE};

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// PgBouncer's configuration file.
    pub ini: PathBuf,
    /// Its auth file (userlist.txt); default: the file its `auth_file` names.
    pub userlist: Option<PathBuf>,
    /// Write sluice.toml here instead of to stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// What happened to one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// Not carried over.
    LeftOut,
    /// Carried over with a change of meaning.
    Changed,
}

/// One setting that was not carried over as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub kind: NoteKind,
    /// `[pgbouncer] client_tls_sslmode`, `[databases] app.reserve_pool`, `auth_file: bob`.
    pub setting: String,
    /// The value, masked if it is a secret; may be empty.
    pub value: String,
    /// `file:line`, when known.
    pub origin: Option<String>,
    pub why: String,
    /// The nearest sluice setting, where there is one.
    pub nearest: Option<String>,
}

impl Note {
    pub fn dropped(
        setting: &str,
        value: &str,
        origin: Option<String>,
        why: String,
        nearest: Option<&str>,
    ) -> Note {
        Note {
            kind: NoteKind::LeftOut,
            setting: setting.to_owned(),
            value: value.to_owned(),
            origin,
            why,
            nearest: nearest.map(str::to_owned),
        }
    }

    pub fn changed(
        setting: &str,
        value: &str,
        origin: Option<String>,
        why: String,
        nearest: Option<&str>,
    ) -> Note {
        Note {
            kind: NoteKind::Changed,
            ..Note::dropped(setting, value, origin, why, nearest)
        }
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.origin {
            write!(f, "{o}: ")?;
        }
        f.write_str(&self.setting)?;
        if !self.value.is_empty() {
            write!(f, " = {}", self.value)?;
        }
        let kind = match self.kind {
            NoteKind::LeftOut => "left out",
            NoteKind::Changed => "changed",
        };
        write!(f, "\n{kind}: {}", self.why)?;
        if let Some(n) = &self.nearest {
            write!(f, "; nearest: {n}")?;
        }
        Ok(())
    }
}

/// Finds a file named in `from` (or on the command line, `from` = None) as PgBouncer does.
fn locate(name: &str, from: Option<&str>) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() || p.exists() {
        return p.to_path_buf();
    }
    if let Some(dir) = from.and_then(|f| Path::new(f).parent()) {
        let beside = dir.join(p);
        if beside.exists() {
            return beside;
        }
    }
    p.to_path_buf()
}

fn read(name: &str, from: Option<&str>) -> Result<(String, String), String> {
    let path = locate(name, from);
    let shown = path.display().to_string();
    std::fs::read_to_string(&path)
        .map(|t| (shown.clone(), t))
        .map_err(|e| format!("cannot read {shown}: {e}"))
}

pub fn main(args: ImportArgs) -> ExitCode {
    match import(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("sluice import-pgbouncer: {msg}");
            ExitCode::from(code)
        }
    }
}

fn import(args: &ImportArgs) -> Result<(), (u8, String)> {
    let usage = |m: String| (EXIT_USAGE, m);
    let ini_name = args.ini.display().to_string();
    let ini = ini::load(&ini_name, &mut |name: &str, from: Option<&str>| {
        read(name, from)
    })
    .map_err(usage)?;
    let mut file_notes = Vec::new();

    // The auth file: the command line's, else the one pgbouncer.ini names.
    let users = match (&args.userlist, ini.get("pgbouncer", "auth_file")) {
        (Some(path), _) => {
            let name = path.display().to_string();
            let (shown, text) = read(&name, None).map_err(usage)?;
            Some(userlist::parse(&shown, &text).map_err(usage)?)
        }
        (None, Some(e)) => {
            match read(e.value.trim(), Some(&e.origin.file)) {
                Ok((shown, text)) => Some(userlist::parse(&shown, &text).map_err(usage)?),
                Err(why) => {
                    file_notes.push(Note::dropped(
                    "[pgbouncer] auth_file",
                    &e.value,
                    Some(e.origin.to_string()),
                    format!("{why}: no users are carried over (give the file as the second argument)"),
                    Some("[users.NAME] password"),
                ));
                    None
                }
            }
        }
        (None, None) => None,
    };
    let auth_type = ini
        .get("pgbouncer", "auth_type")
        .map(|e| e.value.trim().to_ascii_lowercase());
    let hba = match (auth_type.as_deref(), ini.get("pgbouncer", "auth_hba_file")) {
        (Some("hba"), Some(e)) => match read(e.value.trim(), Some(&e.origin.file)) {
            Ok((shown, text)) => Some(hba::parse(&shown, &text).map_err(usage)?),
            Err(why) => {
                file_notes.push(Note::dropped(
                    "[pgbouncer] auth_hba_file",
                    &e.value,
                    Some(e.origin.to_string()),
                    why,
                    Some("auth_type"),
                ));
                None
            }
        },
        _ => None,
    };

    let out = map::convert(&map::Inputs {
        ini: &ini,
        users: users.as_deref(),
        hba: hba.as_deref(),
        source: &ini_name,
        file_notes: &file_notes,
    });
    let (toml, notes) = (out.toml, out.notes);

    // The output must pass `sluice --check` (but for the TLS files it names, which are read where
    // sluice will run); if it does not, that is this importer's bug.
    if let Err(e) = sluice::Config::from_toml_unloaded(&toml) {
        return Err((
            70,
            format!(
                "the converted config is not valid ({e}); please report this with the input files.\n{toml}"
            ),
        ));
    }
    match &args.output {
        Some(path) => std::fs::write(path, &toml).map_err(|e| {
            (
                EXIT_UNAVAILABLE,
                format!("cannot write {}: {e}", path.display()),
            )
        })?,
        None => print!("{toml}"),
    }
    if notes.is_empty() {
        eprintln!("sluice import-pgbouncer: every setting was carried over");
    } else {
        eprintln!(
            "sluice import-pgbouncer: {} setting(s) not carried over or carried over with a change:",
            notes.len()
        );
        for n in &notes {
            let mut lines = n.to_string();
            lines = lines.replace('\n', "\n    ");
            eprintln!("  {lines}");
        }
    }
    Ok(())
}
