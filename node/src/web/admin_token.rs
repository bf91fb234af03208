//! Who may take the status page's manual steps: whoever shows the token in
//! the node's `[metrics] admin_token_file`, either as `Authorization:
//! Bearer TOKEN` (scripts, curl) or through the page's sign-in form, which
//! sets a cookie holding the token's digest (`HttpOnly`, `SameSite=Strict`,
//! so another site cannot make a signed-in browser take a step).
//!
//! Reading the page needs no token: it shows what `batonctl status` and
//! `tasks list` show to anyone who can reach the listener.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The name of the cookie the sign-in form sets.
pub const COOKIE: &str = "baton_admin";

/// The token that unlocks manual steps, kept only as its digest.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

/// What a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    Nothing,
    /// `Authorization: Bearer` and the token.
    Bearer(&'a str),
    /// The sign-in cookie's value.
    Cookie(&'a str),
}

impl AdminToken {
    /// Fewest characters of a token: about 95 bits when drawn from
    /// base64's alphabet, as `openssl rand -base64 24` gives 32.
    pub const MIN_CHARS: usize = 16;

    /// Reads the token from `file`: its first line, without surrounding
    /// blanks.
    pub fn load(file: &Path) -> Result<AdminToken, String> {
        let text = std::fs::read_to_string(file).map_err(|e| {
            format!(
                "cannot read {}: {e}; write a token of at least {} characters there (for example with \
                 `openssl rand -base64 24 > {}`), or remove the setting to keep the status page read-only",
                file.display(),
                Self::MIN_CHARS,
                file.display()
            )
        })?;
        Self::parse(&text).map_err(|why| format!("{}: {why}", file.display()))
    }

    /// The token in `text`: its first line, without surrounding blanks.
    pub fn parse(text: &str) -> Result<AdminToken, String> {
        let token = text.lines().next().unwrap_or("").trim();
        if token.chars().count() < Self::MIN_CHARS {
            return Err(format!(
                "the admin token is {} characters; it must be at least {} (for example `openssl rand -base64 \
                 24`)",
                token.chars().count(),
                Self::MIN_CHARS
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the admin token must not contain blanks or control characters".into());
        }
        Ok(AdminToken { digest: digest(token) })
    }

    /// The sign-in cookie's value for this token.
    pub fn cookie_value(&self) -> String {
        hex::encode(self.digest)
    }

    /// Whether `presented` shows this token (compared in constant time).
    pub fn admits(&self, presented: Presented<'_>) -> bool {
        let shown = match presented {
            Presented::Nothing => return false,
            Presented::Bearer(token) => digest(token.trim()),
            Presented::Cookie(value) => match hex::decode(value.trim()).ok().and_then(|b| b.try_into().ok()) {
                Some(digest) => digest,
                None => return false,
            },
        };
        shown
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn digest(token: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"baton-status-page\0");
    hasher.update(token.as_bytes());
    hasher.finalize().into()
}

/// What a request presents, from its `Authorization` and `Cookie` headers.
pub fn presented<'a>(authorization: Option<&'a str>, cookies: Option<&'a str>) -> Presented<'a> {
    if let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
        return Presented::Bearer(token);
    }
    let cookie = cookies.into_iter().flat_map(|c| c.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == COOKIE).then_some(value)
    });
    match cookie {
        Some(value) => Presented::Cookie(value),
        None => Presented::Nothing,
    }
}

/// Whether a step's request comes from this page: a browser sends
/// `Origin` with every POST, and it must name the host the page was served
/// from. Requests without it (curl, scripts) rely on the bearer token.
pub fn same_origin(origin: Option<&str>, host: Option<&str>) -> bool {
    match (origin, host) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                == Some(host)
        }
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-token-of-24-chars";

    #[test]
    fn a_token_is_its_first_line_and_must_be_long_enough() {
        assert!(AdminToken::parse(&format!("  {TOKEN}  \nignored\n")).is_ok());
        let short = AdminToken::parse("short").unwrap_err();
        assert!(
            short.contains("5 characters") && short.contains("at least 16"),
            "{short}"
        );
        assert!(AdminToken::parse("").is_err());
        assert!(AdminToken::parse("with a blank inside it").is_err());
        let missing = AdminToken::load(Path::new("/nonexistent/token")).unwrap_err();
        assert!(
            missing.contains("/nonexistent/token") && missing.contains("openssl rand"),
            "{missing}"
        );
    }

    #[test]
    fn the_token_or_its_cookie_admits_and_nothing_else_does() {
        let token = AdminToken::parse(TOKEN).unwrap();
        assert!(token.admits(Presented::Bearer(TOKEN)));
        assert!(token.admits(Presented::Cookie(&token.cookie_value())));
        assert!(!token.admits(Presented::Nothing));
        assert!(!token.admits(Presented::Bearer("s3cret-token-of-24-charz")));
        // The cookie holds the digest, not the token.
        assert!(!token.admits(Presented::Cookie(TOKEN)));
        assert!(!token.admits(Presented::Cookie("00")));
        assert!(!format!("{token:?}").contains(TOKEN));
    }

    #[test]
    fn requests_present_a_bearer_token_or_the_cookie() {
        assert_eq!(presented(Some("Bearer abc"), None), Presented::Bearer("abc"));
        assert_eq!(
            presented(None, Some("theme=dark; baton_admin=ff00; x=1")),
            Presented::Cookie("ff00")
        );
        assert_eq!(presented(Some("Basic abc"), Some("other=1")), Presented::Nothing);
        assert_eq!(presented(None, None), Presented::Nothing);
    }

    #[test]
    fn a_browser_step_must_come_from_the_page_host() {
        assert!(same_origin(None, Some("127.0.0.1:9464")));
        assert!(same_origin(Some("http://127.0.0.1:9464"), Some("127.0.0.1:9464")));
        assert!(!same_origin(Some("http://evil.example"), Some("127.0.0.1:9464")));
        assert!(!same_origin(Some("null"), Some("127.0.0.1:9464")));
        assert!(!same_origin(Some("http://127.0.0.1:9464"), None));
    }
}
