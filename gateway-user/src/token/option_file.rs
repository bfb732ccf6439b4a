//! The MySQL client option file `--write-option-file` writes: a `[client]` group with the
//! token as the password, mode 0600.
//!
//! What the clients read (verified by `tests/tests/token_cli.rs`): the `mariadb` CLI reads
//! `password` from `[client]` with `--defaults-extra-file=PATH` (or `--defaults-file`);
//! PyMySQL's `read_default_file=PATH` reads `[client]` `password` (its parser strips one pair
//! of quotes and nothing else); mysql-connector-python's `option_files=PATH` reads `[client]`
//! and ignores options it does not know there. Nothing else is written: the gateway asks for
//! the password through `caching_sha2_password` full authentication inside TLS, which every
//! client answers with the cleartext password by itself, so `enable-cleartext-plugin` (which
//! MySQL's own client would need for `mysql_clear_password`) is not needed: all three accept
//! it, but MariaDB's client then warns "option '--enable-cleartext-plugin' is obsolete" on
//! every run.
//!
//! The token is written unquoted, so it must be made of characters all three parsers take
//! literally: JWTs (base64url and dots) and the usual opaque tokens are.

use std::path::Path;

use super::{Secret, TokenError, cache::write_private};

/// The option file's text for `token`.
pub fn render(token: &Secret) -> Result<String, TokenError> {
    let value = token.expose();
    let safe =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=');
    if value.is_empty() || !value.chars().all(safe) {
        return Err(TokenError::OptionFile(
            "the token has characters a MySQL option file cannot hold unquoted; use --print instead"
                .to_owned(),
        ));
    }
    Ok(format!(
        "# Written by `tollgate login`/`tollgate token`: the token is the password.\n[client]\npassword={value}\n"
    ))
}

/// Writes the option file for `token` at `path` (mode 0600, replacing it atomically).
pub fn write(path: &Path, token: &Secret) -> Result<(), TokenError> {
    let text = zeroize::Zeroizing::new(render(token)?);
    write_private(path, text.as_bytes(), "writing the option file")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn a_jwt_is_written_as_the_client_password_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("my.cnf");
        write(&path, &Secret::new("eyJh.eyJz.c2ln-_".to_owned())).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("[client]\npassword=eyJh.eyJz.c2ln-_\n"),
            "{text}"
        );
        assert_eq!(
            std::fs::metadata(&path).expect("stat").mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_token_with_option_file_syntax_is_refused_without_echoing_it() {
        let error = render(&Secret::new("a b#c\"d".to_owned())).expect_err("refused");
        assert!(!error.to_string().contains("a b#c"));
    }
}
