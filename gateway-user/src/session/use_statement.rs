//! Finds the databases `USE` statements in a query switch to, for the policy's `databases`
//! (`[[targets.allow]]`): a lexical scan that splits the query into statements at `;` outside
//! quotes and comments (a query may hold several), and reads each statement's leading `USE`
//! and its database name, bare or back-quoted.

/// The databases that `USE` statements in `query` name, in order.
#[must_use]
pub fn used_databases(query: &[u8]) -> Vec<String> {
    statements(query)
        .into_iter()
        .filter_map(use_target)
        .collect()
}

/// The statements of `query`, split at `;` outside quotes and comments.
fn statements(query: &[u8]) -> Vec<&[u8]> {
    let mut statements = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < query.len() {
        match query[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < query.len() && query[i] != quote {
                    if query[i] == b'\\' && quote != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'#' => i = skip_line(query, i),
            b'-' if query.get(i + 1) == Some(&b'-') => i = skip_line(query, i),
            b'/' if query.get(i + 1) == Some(&b'*') => i = skip_block(query, i),
            b';' => {
                statements.push(&query[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    statements.push(&query[start.min(query.len())..]);
    statements
}

fn skip_line(query: &[u8], from: usize) -> usize {
    query[from..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(query.len(), |n| from + n)
}

fn skip_block(query: &[u8], from: usize) -> usize {
    query[from + 2..]
        .windows(2)
        .position(|w| w == b"*/")
        .map_or(query.len(), |n| from + 2 + n + 1)
}

/// The database of a `USE db` statement (leading whitespace and comments skipped).
fn use_target(statement: &[u8]) -> Option<String> {
    let mut i = 0;
    loop {
        while statement.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        match (statement.get(i), statement.get(i + 1)) {
            (Some(b'#'), _) | (Some(b'-'), Some(b'-')) => i = skip_line(statement, i),
            (Some(b'/'), Some(b'*')) => i = skip_block(statement, i) + 1,
            _ => break,
        }
    }
    let keyword = statement.get(i..i + 3)?;
    if !keyword.eq_ignore_ascii_case(b"use") {
        return None;
    }
    let rest = statement.get(i + 3..)?;
    if !rest
        .first()
        .is_some_and(|b| b.is_ascii_whitespace() || *b == b'`')
    {
        return None;
    }
    let rest = rest.trim_ascii();
    let name = if let Some(quoted) = rest.strip_prefix(b"`") {
        let end = quoted.iter().position(|b| *b == b'`')?;
        &quoted[..end]
    } else {
        let end = rest
            .iter()
            .position(u8::is_ascii_whitespace)
            .unwrap_or(rest.len());
        &rest[..end]
    };
    (!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_use_statements_and_nothing_else() {
        assert_eq!(used_databases(b"USE orders"), ["orders"]);
        assert_eq!(used_databases(b"  use `my db` ; select 1"), ["my db"]);
        assert_eq!(
            used_databases(b"SELECT 'a;USE x'; /* c */ USE y; -- USE z\nUSE\tw"),
            ["y", "w"]
        );
        assert!(used_databases(b"SELECT * FROM users").is_empty());
        assert!(used_databases(b"user_defined()").is_empty());
        assert!(used_databases(b"UPDATE t SET used = 1").is_empty());
        assert!(used_databases(b"").is_empty());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(query: Vec<u8>) {
            let _ = used_databases(&query);
        }
    }
}
