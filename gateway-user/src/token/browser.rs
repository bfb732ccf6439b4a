//! The browser side of the authorization-code flow: the loopback listener that receives the
//! redirect (`http://127.0.0.1:<ephemeral>/callback`, RFC 8252 section 7.3) and opening the
//! authorization URL in the user's browser.
//!
//! A browser is available when `$BROWSER` names one (the convention `xdg-open` and many tools
//! follow: the first `:`-separated entry, `%s` replaced by the URL or the URL appended), or
//! when there is a display (`$DISPLAY` or `$WAYLAND_DISPLAY`: `xdg-open URL`). The URL is
//! always printed on stderr too.

use std::{path::PathBuf, process::Stdio, time::Duration};

use openidconnect::url::Url;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use super::TokenError;

/// The longest request the listener reads (the redirect's request line and headers).
const MAX_REQUEST: usize = 16 * 1024;

/// True when a browser can be opened on this host (`$BROWSER` or a display).
#[must_use]
pub fn available() -> bool {
    ["BROWSER", "DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Opens `url` with `$BROWSER` or `xdg-open`, without waiting for it; prints the URL on
/// stderr either way. Failing to start a browser is not an error: the user can still follow
/// the printed URL.
pub fn open(url: &str) {
    eprintln!("tollgate: sign in at this URL (opening a browser if there is one):\n  {url}");
    let command = std::env::var("BROWSER")
        .ok()
        .and_then(|b| b.split(':').next().map(str::to_owned))
        .filter(|b| !b.trim().is_empty());
    let (program, args): (String, Vec<String>) = match command {
        Some(browser) => {
            let mut words = browser.split_whitespace().map(str::to_owned);
            let program = words.next().unwrap_or_default();
            let mut args: Vec<String> = words.collect();
            if args.iter().any(|a| a.contains("%s")) {
                for a in &mut args {
                    *a = a.replace("%s", url);
                }
            } else {
                args.push(url.to_owned());
            }
            (program, args)
        }
        None if available() => ("xdg-open".to_owned(), vec![url.to_owned()]),
        None => return,
    };
    let spawned = std::process::Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        // Keep stdout for the token (`--print`).
        .stdout(std::io::stderr())
        .spawn();
    match spawned {
        // Reaped by a thread so no zombie stays behind while we wait for the redirect.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(error) => {
            eprintln!("tollgate: could not start {program}: {error}; open the URL yourself");
        }
    }
}

/// The loopback listener for one sign-in.
pub struct Loopback {
    listener: TcpListener,
    port: u16,
}

/// What the redirect carried.
#[derive(Debug)]
pub struct Redirect {
    /// `code`, when the sign-in succeeded.
    pub code: Option<super::Secret>,
    /// `state`.
    pub state: Option<String>,
    /// `error` and `error_description`, when it did not.
    pub error: Option<(String, Option<String>)>,
}

impl Loopback {
    /// Binds 127.0.0.1 on an ephemeral port.
    pub async fn bind() -> Result<Self, TokenError> {
        let io = |source| TokenError::Io {
            what: "listening for the sign-in redirect on",
            path: PathBuf::from("127.0.0.1"),
            source,
        };
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(io)?;
        let port = listener.local_addr().map_err(io)?.port();
        Ok(Self { listener, port })
    }

    /// The redirect URI to register in the authorization request.
    #[must_use]
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// Waits (at most `timeout`) for a request to `/callback` and answers it with a short
    /// page; other requests (a browser's `/favicon.ico`) get a 404 and are skipped.
    pub async fn wait(&self, timeout: Duration) -> Result<Redirect, TokenError> {
        let accept = async {
            loop {
                let Ok((stream, _)) = self.listener.accept().await else {
                    continue;
                };
                if let Some(redirect) = handle(stream).await {
                    return redirect;
                }
            }
        };
        tokio::time::timeout(timeout, accept)
            .await
            .map_err(|_| TokenError::TimedOut(timeout.as_secs()))
    }
}

/// Reads one request; answers it; the redirect when it was one.
async fn handle(mut stream: TcpStream) -> Option<Redirect> {
    let mut buf = Vec::with_capacity(2048);
    let read = async {
        let mut chunk = [0u8; 2048];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(chunk.get(..n)?);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    let head = String::from_utf8_lossy(&buf);
    let target = head.lines().next()?.split_whitespace().nth(1)?.to_owned();
    let url = Url::parse(&format!("http://127.0.0.1{target}")).ok()?;
    if !head.starts_with("GET ") || url.path() != "/callback" {
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return None;
    }
    let mut redirect = Redirect {
        code: None,
        state: None,
        error: None,
    };
    let mut description = None;
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "code" => redirect.code = Some(super::Secret::new(value.into_owned())),
            "state" => redirect.state = Some(value.into_owned()),
            "error" => redirect.error = Some((value.into_owned(), None)),
            "error_description" => description = Some(value.into_owned()),
            _ => {}
        }
    }
    if let Some((_, d)) = &mut redirect.error {
        *d = description;
    }
    let body = if redirect.code.is_some() {
        "Signed in. You can close this window and return to the terminal."
    } else {
        "Sign-in did not complete. See the terminal."
    };
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
    Some(redirect)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_redirect_is_read_and_other_paths_skipped() {
        let loopback = Loopback::bind().await.expect("bind");
        let uri = loopback.redirect_uri();
        assert!(uri.starts_with("http://127.0.0.1:") && uri.ends_with("/callback"));
        let port = loopback.port;
        let client = tokio::spawn(async move {
            for path in ["/favicon.ico", "/callback?code=abc&state=s1"] {
                let mut s = TcpStream::connect(("127.0.0.1", port))
                    .await
                    .expect("connect");
                s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                    .await
                    .expect("write");
                let mut answer = String::new();
                s.read_to_string(&mut answer).await.expect("read");
            }
        });
        let redirect = loopback
            .wait(Duration::from_secs(5))
            .await
            .expect("redirect");
        client.await.expect("client");
        assert_eq!(redirect.code.expect("code").expose(), "abc");
        assert_eq!(redirect.state.as_deref(), Some("s1"));
    }

    #[tokio::test]
    async fn a_denial_carries_the_error() {
        let loopback = Loopback::bind().await.expect("bind");
        let port = loopback.port;
        tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            s.write_all(
                b"GET /callback?error=access_denied&error_description=no&state=s HTTP/1.1\r\n\r\n",
            )
            .await
            .expect("write");
        });
        let redirect = loopback
            .wait(Duration::from_secs(5))
            .await
            .expect("redirect");
        assert_eq!(
            redirect.error,
            Some(("access_denied".to_owned(), Some("no".to_owned())))
        );
    }
}
