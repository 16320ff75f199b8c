//! The seed corpus: small valid inputs for each target, written with sluice-proto's own writers and
//! postgres-protocol's frontend writers. `fuzz/seeds/TARGET/NAME` holds exactly these bytes;
//! proto's `fuzz_corpus` test checks that (and rewrites them with `SLUICE_WRITE_SEEDS=1`).

use bytes::BytesMut;
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend as pp;
use sluice_proto::auth::ScramVerifier;
use sluice_proto::backend::{self, ErrorResponse, FieldDescription, Severity};
use sluice_proto::frontend::{self, Bind, Close, Describe, Execute};
use sluice_proto::startup;

/// One seed: target, file name, bytes.
pub type Seed = (&'static str, &'static str, Vec<u8>);

pub fn all() -> Vec<Seed> {
    let mut seeds = Vec::new();
    startup_seeds(&mut seeds);
    client_seeds(&mut seeds);
    server_seeds(&mut seeds);
    auth_seeds(&mut seeds);
    seeds
}

/// Builds one input with writers appending to a buffer.
fn build(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut b = BytesMut::new();
    f(&mut b);
    b.to_vec()
}

fn startup_of(params: &[(&str, &str)], b: &mut BytesMut) {
    startup::write_startup(params, b);
}

fn startup_seeds(s: &mut Vec<Seed>) {
    let t = "startup";
    s.push((
        t,
        "startup",
        build(|b| startup_of(&[("user", "app"), ("database", "db")], b)),
    ));
    s.push((
        t,
        "startup_many_params",
        build(|b| {
            let params = [
                ("user", "app"),
                ("database", "shop"),
                ("application_name", "psql"),
                ("client_encoding", "UTF8"),
                ("options", "-c search_path=public -c statement_timeout=5s"),
                ("DateStyle", "ISO, MDY"),
            ];
            pp::startup_message(params.iter().copied(), b).unwrap();
        }),
    ));
    s.push((
        t,
        "startup_3_2_with_pq_option",
        build(|b| {
            startup_of(&[("user", "app"), ("_pq_.compression", "on")], b);
            b[6..8].copy_from_slice(&2u16.to_be_bytes());
        }),
    ));
    s.push((
        t,
        "ssl_then_startup",
        build(|b| {
            pp::ssl_request(b);
            startup_of(&[("user", "app")], b);
        }),
    ));
    s.push((
        t,
        "gssenc_then_startup",
        build(|b| {
            b.extend_from_slice(&8i32.to_be_bytes());
            b.extend_from_slice(&startup::GSSENC_REQUEST_CODE.to_be_bytes());
            startup_of(&[("user", "app"), ("replication", "database")], b);
        }),
    ));
    s.push((t, "cancel", build(|b| startup::write_cancel(4242, -17, b))));
    s.push((t, "cancel_pp", build(|b| pp::cancel_request(7, 8, b))));
}

fn pp_bind(values: &[Option<&[u8]>], formats: &[i16], results: &[i16], b: &mut BytesMut) {
    let ser = |v: &Option<&[u8]>, b: &mut BytesMut| match v {
        Some(v) => {
            b.extend_from_slice(v);
            Ok(IsNull::No)
        }
        None => Ok(IsNull::Yes),
    };
    let r = pp::bind(
        "",
        "s1",
        formats.iter().copied(),
        values,
        ser,
        results.iter().copied(),
        b,
    );
    assert!(r.is_ok());
}

fn client_seeds(s: &mut Vec<Seed>) {
    let t = "client";
    s.push((
        t,
        "simple_query",
        build(|b| {
            frontend::write_query("SELECT 1; BEGIN; UPDATE t SET x = 1; COMMIT", b);
            frontend::write_terminate(b);
        }),
    ));
    s.push((
        t,
        "extended",
        build(|b| {
            pp::parse("s1", "SELECT $1::int, $2", [23, 0], b).unwrap();
            pp_bind(&[Some(b"42"), None], &[0], &[0, 1], b);
            pp::describe(b'P', "", b).unwrap();
            pp::execute("", 0, b).unwrap();
            pp::sync(b);
        }),
    ));
    s.push((
        t,
        "extended_sluice_writers",
        build(|b| {
            frontend::write_parse("", "SELECT $1", [25], b);
            Bind::write("p1", "", b"\0\x01\0\x01\0\x01\0\0\0\x03abc\0\0", b);
            Describe::write(b'S', "", b);
            Execute::write("p1", 100, b);
            Close::write(b'P', "p1", b);
            Close::write(b'S', "s1", b);
            frontend::write_flush(b);
            frontend::write_sync(b);
        }),
    ));
    s.push((
        t,
        "copy_in",
        build(|b| {
            pp::query("COPY t FROM STDIN", b).unwrap();
            pp::CopyData::new(&b"1\tone\n2\ttwo\n"[..])
                .unwrap()
                .write(b);
            pp::copy_done(b);
            pp::query("COPY t FROM STDIN", b).unwrap();
            pp::copy_fail("client gave up", b).unwrap();
        }),
    ));
    s.push((
        t,
        "function_call",
        build(|b| {
            // oid 1598, one binary format, two arguments (NULL, "ab"), binary result.
            let body = b"\0\0\x06\x3e\0\x01\0\x01\0\x02\xff\xff\xff\xff\0\0\0\x02ab\0\x01";
            b.extend_from_slice(&crate_wire(b'F', body));
            frontend::write_sync(b);
        }),
    ));
    s.push((
        t,
        "password_family",
        build(|b| {
            pp::password_message(b"md5a3556571e93b0d20722ba62be61e8c2d", b).unwrap();
            pp::sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=rOprNGfwEbeRWgbNEkqO", b)
                .unwrap();
            pp::sasl_response(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", b).unwrap();
        }),
    ));
}

fn crate_wire(tag: u8, body: &[u8]) -> Vec<u8> {
    super::frames::wire(tag, body).to_vec()
}

fn server_seeds(s: &mut Vec<Seed>) {
    let t = "server";
    s.push((
        t,
        "login",
        build(|b| {
            backend::authentication_sasl(&["SCRAM-SHA-256"], b);
            backend::authentication_sasl_continue(b"r=abc,s=c2FsdA==,i=4096", b);
            backend::authentication_sasl_final(b"v=c2lnbmF0dXJl", b);
            backend::authentication_ok(b);
            backend::parameter_status("server_version", "15.8", b);
            backend::parameter_status("TimeZone", "UTC", b);
            backend::backend_key_data(1234, -99, b);
            backend::ready_for_query(b'I', b);
        }),
    ));
    s.push((
        t,
        "auth_requests",
        build(|b| {
            backend::authentication_cleartext_password(b);
            backend::authentication_md5_password([1, 2, 3, 4], b);
            backend::authentication_sasl(&["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"], b);
            b.extend_from_slice(&crate_wire(b'R', &7i32.to_be_bytes()));
        }),
    ));
    s.push((
        t,
        "simple_result",
        build(|b| {
            let fields = [
                FieldDescription::text("id", 23),
                FieldDescription {
                    name: "name",
                    table_oid: 16384,
                    column: 2,
                    type_oid: 25,
                    type_size: -1,
                    type_modifier: -1,
                    format: 0,
                },
            ];
            backend::row_description(&fields, b);
            backend::data_row([Some(&b"1"[..]), Some(b"one")], b);
            backend::data_row([Some(&b"2"[..]), None], b);
            backend::command_complete("SELECT 2", b);
            backend::ready_for_query(b'T', b);
            backend::command_complete("INSERT 0 5", b);
        }),
    ));
    s.push((
        t,
        "extended_result",
        build(|b| {
            backend::parse_complete(b);
            backend::parameter_description(&[23, 25], b);
            backend::no_data(b);
            backend::bind_complete(b);
            backend::empty_query_response(b);
            backend::close_complete(b);
            backend::ready_for_query(b'I', b);
        }),
    ));
    s.push((
        t,
        "error_and_notice",
        build(|b| {
            ErrorResponse::new(Severity::Warning, "01000", "careful").write_notice(b);
            ErrorResponse::error("42P01", "relation \"t\" does not exist")
                .detail("d")
                .hint("h")
                .write(b);
            backend::ready_for_query(b'E', b);
        }),
    ));
}

/// A SASLInitialResponse then a SASLResponse whose attributes are the harness's markers.
fn scram_messages(mechanism: &str, client_first: &[u8], b: &mut BytesMut) {
    pp::sasl_initial_response(mechanism, client_first, b).unwrap();
    pp::sasl_response(b"c=*,r=*,p=*", b).unwrap();
}

fn auth_seeds(s: &mut Vec<Seed>) {
    let t = "auth";
    let login = |cfg: u8, f: &dyn Fn(&mut BytesMut)| {
        build(|b| {
            b.extend_from_slice(&[cfg]);
            startup_of(&[("user", "alice"), ("database", "db")], b);
            f(b);
        })
    };
    // md5: plain secret, right response (marker); md5 secret in upper case; a wrong response.
    s.push((
        t,
        "md5_plain",
        login(0b0000_0000, &|b| pp::password_message(b"*", b).unwrap()),
    ));
    s.push((
        t,
        "md5_hash_upper",
        login(0b0010_0100, &|b| pp::password_message(b"*", b).unwrap()),
    ));
    s.push((
        t,
        "md5_wrong",
        login(0b0000_0000, &|b| {
            pp::password_message(b"md5a3556571e93b0d20722ba62be61e8c2d", b).unwrap()
        }),
    ));
    // SCRAM: plain, stored and unknown user; channel binding offered and used, or declined.
    let first = b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL";
    s.push((
        t,
        "scram_plain",
        login(0b0000_0001, &|b| scram_messages("SCRAM-SHA-256", first, b)),
    ));
    s.push((
        t,
        "scram_stored",
        login(0b0000_1001, &|b| scram_messages("SCRAM-SHA-256", first, b)),
    ));
    s.push((
        t,
        "scram_unknown_user",
        login(0b0000_1101, &|b| scram_messages("SCRAM-SHA-256", first, b)),
    ));
    s.push((
        t,
        "scram_plus",
        login(0b0001_0001, &|b| {
            scram_messages(
                "SCRAM-SHA-256-PLUS",
                b"p=tls-server-end-point,,n=,r=fyko+d2lbbFgONRv9qkxdawL",
                b,
            )
        }),
    ));
    s.push((
        t,
        "scram_y_flag",
        login(0b0001_0011, &|b| {
            scram_messages("SCRAM-SHA-256", b"y,,n=alice,r=abcdef", b)
        }),
    ));
    s.push((
        t,
        "scram_after_ssl",
        build(|b| {
            b.extend_from_slice(&[0b0000_0001]);
            pp::ssl_request(b);
            startup_of(&[("user", "bob")], b);
            pp::sasl_initial_response("SCRAM-SHA-256", b"n,,n=bob,r=xyz", b).unwrap();
            pp::sasl_response(b"c=biws,r=*,p=*", b).unwrap();
        }),
    ));
    // Secret texts.
    let secret = |text: &str| [&[0b0000_0010u8][..], text.as_bytes()].concat();
    let verifier = ScramVerifier::from_password_with("pencil", b"salt", 4096);
    s.push((t, "secret_scram", secret(&verifier.to_secret_string())));
    s.push((
        t,
        "secret_md5",
        secret("md53858f62230ac3c915f300c664312c63f"),
    ));
    s.push((t, "secret_plain", secret("correct horse battery staple")));
}
