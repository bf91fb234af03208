//! Who may take the status page's manual steps: whoever shows the token in
//! the node's `[metrics] admin_token_file`, either as `Authorization:
//! Bearer TOKEN` (scripts, curl) or through the page's sign-in form, which
//! sets a session cookie: the time it ends (12 hours on) and an HMAC of it
//! keyed by the token, never the token itself. The cookie is `HttpOnly`,
//! `SameSite=Strict`, and named for the listener's port, as browsers share
//! cookies between the ports of one host.
//!
//! A step must also come from the page itself (see [`from_this_page`]), so
//! that another site cannot make a signed-in browser take one.

use std::path::Path;

use sha2::{Digest, Sha256};

/// How long a sign-in lasts.
pub const SESSION_MS: u64 = 12 * 3600 * 1000;

/// The token that unlocks manual steps, kept only as its digest (which
/// also keys the session cookies' HMACs).
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
    /// The session cookie's value.
    Session(&'a str),
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

    /// A token nobody knows: it seals the page's notices on a node that
    /// has no token of its own (where the admin certificate unlocks steps).
    pub fn random() -> AdminToken {
        let secret: [u8; 32] = rand::random();
        AdminToken {
            digest: digest(&hex::encode(secret)),
        }
    }

    /// Whether `token` is this token (compared in constant time).
    pub fn is(&self, token: &str) -> bool {
        same(&digest(token.trim()), &self.digest)
    }

    /// A session cookie's value, for a sign-in at `now_ms`.
    pub fn session(&self, now_ms: u64) -> String {
        let ends = now_ms + SESSION_MS;
        format!(
            "{ends}.{}",
            hex::encode(self.mac(b"session", ends.to_string().as_bytes()))
        )
    }

    /// Whether `presented` shows this token, or a session of it that has
    /// not ended by `now_ms`.
    pub fn admits(&self, presented: Presented<'_>, now_ms: u64) -> bool {
        match presented {
            Presented::Nothing => false,
            Presented::Bearer(token) => self.is(token),
            Presented::Session(value) => {
                let Some((ends, mac)) = value.trim().split_once('.') else {
                    return false;
                };
                let live = ends.parse::<u64>().is_ok_and(|ends| ends > now_ms);
                let shown: Option<[u8; 32]> = hex::decode(mac).ok().and_then(|b| b.try_into().ok());
                live && shown.is_some_and(|shown| same(&shown, &self.mac(b"session", ends.as_bytes())))
            }
        }
    }

    /// `text` with its HMAC, for a cookie this node reads back ([`Self::open`]).
    pub fn seal(&self, text: &str) -> String {
        let encoded = super::task_rows::percent_encode(text);
        format!("{encoded}.{}", hex::encode(self.mac(b"notice", text.as_bytes())))
    }

    /// The text [`Self::seal`] sealed, if `sealed` is one of this token's.
    pub fn open(&self, sealed: &str) -> Option<String> {
        let (encoded, mac) = sealed.rsplit_once('.')?;
        let text = percent_decode(encoded)?;
        let shown: [u8; 32] = hex::decode(mac).ok()?.try_into().ok()?;
        same(&shown, &self.mac(b"notice", text.as_bytes())).then_some(text)
    }

    /// HMAC-SHA256 (RFC 2104) of `purpose`, a zero byte and `message`,
    /// keyed by the token's digest.
    fn mac(&self, purpose: &[u8], message: &[u8]) -> [u8; 32] {
        let mut inner_pad = [0x36u8; 64];
        let mut outer_pad = [0x5cu8; 64];
        for (i, byte) in self.digest.iter().enumerate() {
            inner_pad[i] ^= byte;
            outer_pad[i] ^= byte;
        }
        let inner = Sha256::new()
            .chain_update(inner_pad)
            .chain_update(purpose)
            .chain_update([0])
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(outer_pad)
            .chain_update(inner)
            .finalize()
            .into()
    }
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn digest(token: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"baton-status-page\0");
    hasher.update(token.as_bytes());
    hasher.finalize().into()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(cookies: Option<&'a str>, name: &str) -> Option<&'a str> {
    cookies.into_iter().flat_map(|c| c.split(';')).find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// What a request presents, from its `Authorization` header and its
/// session cookie `session_cookie`.
pub fn presented<'a>(authorization: Option<&'a str>, cookies: Option<&'a str>, session_cookie: &str) -> Presented<'a> {
    if let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) {
        return Presented::Bearer(token);
    }
    match cookie(cookies, session_cookie) {
        Some(value) => Presented::Session(value),
        None => Presented::Nothing,
    }
}

/// Whether a step comes from this node's own page. A browser names where a
/// POST comes from in `Origin`, or at least in `Sec-Fetch-Site`: it must
/// be this host, or `same-origin`. A request with neither (curl, a script)
/// is taken only with a credential a browser never adds by itself
/// (`script`: the bearer token, or the admin certificate with the header
/// scripts send beside it).
pub fn from_this_page(origin: Option<&str>, fetch_site: Option<&str>, host: Option<&str>, script: bool) -> bool {
    match (origin, fetch_site) {
        (Some(origin), _) => {
            host.is_some()
                && origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
                    == host
        }
        (None, Some(site)) => site == "same-origin",
        (None, None) => script,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "s3cret-token-of-24-chars";
    const NOW: u64 = 1_700_000_000_000;

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
    fn the_token_or_a_live_session_admits_and_nothing_else_does() {
        let token = AdminToken::parse(TOKEN).unwrap();
        assert!(token.admits(Presented::Bearer(TOKEN), NOW));
        assert!(!token.admits(Presented::Bearer("s3cret-token-of-24-charz"), NOW));
        assert!(!token.admits(Presented::Nothing, NOW));
        let session = token.session(NOW);
        assert!(!session.contains(TOKEN), "a session holds no token");
        assert!(token.admits(Presented::Session(&session), NOW + SESSION_MS - 1));
        assert!(!token.admits(Presented::Session(&session), NOW + SESSION_MS), "it ends");
        // Moving its end breaks its HMAC; another token's session is not one.
        let (_, mac) = session.split_once('.').unwrap();
        let later = format!("{}.{mac}", NOW + 2 * SESSION_MS);
        assert!(!token.admits(Presented::Session(&later), NOW));
        let other = AdminToken::parse("another-token-of-24-char").unwrap();
        assert!(!token.admits(Presented::Session(&other.session(NOW)), NOW));
        for junk in ["", "00", "x.y", TOKEN] {
            assert!(!token.admits(Presented::Session(junk), NOW), "{junk}");
        }
        assert!(!format!("{token:?}").contains(TOKEN));
    }

    #[test]
    fn a_sealed_notice_opens_only_unchanged_and_with_its_token() {
        let token = AdminToken::parse(TOKEN).unwrap();
        let sealed = token.seal("Paused task a; 50% done.");
        assert!(!sealed.contains(' ') && !sealed.contains(';'), "{sealed}");
        assert_eq!(token.open(&sealed).as_deref(), Some("Paused task a; 50% done."));
        let forged = format!(
            "refused%3A%20sign%20in%20elsewhere{}",
            &sealed[sealed.rfind('.').unwrap()..]
        );
        assert_eq!(token.open(&forged), None);
        let other = AdminToken::parse("another-token-of-24-char").unwrap();
        assert_eq!(other.open(&sealed), None);
        assert_eq!(token.open("no-mac"), None);
    }

    #[test]
    fn requests_present_a_bearer_token_or_the_session_cookie_of_this_port() {
        assert_eq!(presented(Some("Bearer abc"), None, "s"), Presented::Bearer("abc"));
        let cookies = Some("theme=dark; baton_admin_9464=ff00; baton_admin_9465=aa");
        assert_eq!(presented(None, cookies, "baton_admin_9464"), Presented::Session("ff00"));
        assert_eq!(presented(None, cookies, "baton_admin_9466"), Presented::Nothing);
        assert_eq!(presented(Some("Basic abc"), Some("other=1"), "s"), Presented::Nothing);
    }

    #[test]
    fn a_step_must_come_from_the_page_or_carry_the_bearer_token() {
        let host = Some("127.0.0.1:9464");
        assert!(from_this_page(Some("http://127.0.0.1:9464"), None, host, false));
        assert!(!from_this_page(
            Some("http://evil.example"),
            Some("same-origin"),
            host,
            true
        ));
        assert!(!from_this_page(Some("null"), None, host, false));
        assert!(!from_this_page(Some("http://127.0.0.1:9464"), None, None, false));
        assert!(from_this_page(None, Some("same-origin"), host, false));
        assert!(!from_this_page(None, Some("same-site"), host, false));
        assert!(
            !from_this_page(None, None, host, false),
            "a cookie alone, from nowhere known"
        );
        assert!(from_this_page(None, None, host, true), "a script with the token");
    }
}
