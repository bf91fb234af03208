//! Which HTTP servers a task may call: `scheme://host[:port]`, nothing
//! wider (no paths, no wildcards). A request reaches a server only when a
//! grant names its scheme, host and port exactly; with no grants, no server
//! is reachable.

use std::fmt;

/// Longest host a grant names (DNS's limit).
pub const MAX_HOST_BYTES: usize = 253;

/// One server a task may call over `wasi:http`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGrant {
    pub tls: bool,
    /// Lower case; an IPv6 address without its brackets.
    pub host: String,
    pub port: u16,
}

impl HttpGrant {
    /// Parses `https://api.example.com`, `http://10.0.0.5:8080` or
    /// `https://[::1]:8443`; the port defaults to the scheme's.
    pub fn parse(text: &str) -> Result<HttpGrant, String> {
        let explain = |why: &str| {
            format!(
                "{text:?} is not an HTTP grant: {why}; write scheme://host[:port], such as https://api.example.com or \
                 http://10.0.0.5:8080"
            )
        };
        let (tls, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(explain("the scheme must be http:// or https://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@', '*']) || rest.chars().any(|c| c.is_whitespace()) {
            return Err(explain("only a host and a port may follow the scheme"));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_authority(rest, default_port).map_err(|why| explain(&why))?;
        if host.is_empty() {
            return Err(explain("the host is missing"));
        }
        if host.len() > MAX_HOST_BYTES {
            return Err(explain(&format!("a host name is at most {MAX_HOST_BYTES} characters")));
        }
        Ok(HttpGrant {
            tls,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether this grant lets a request with `tls` (https) reach
    /// `authority` (`host[:port]` as the request names it).
    pub fn permits(&self, tls: bool, authority: &str) -> bool {
        let default_port = if tls { 443 } else { 80 };
        match split_authority(authority, default_port) {
            Ok((host, port)) => tls == self.tls && port == self.port && host.eq_ignore_ascii_case(&self.host),
            Err(_) => false,
        }
    }
}

/// `host[:port]` or `[v6][:port]`, as host and port.
fn split_authority(authority: &str, default_port: u16) -> Result<(&str, u16), String> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("an IPv6 address needs its closing ]")?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(after.strip_prefix(':').ok_or("a port follows the ] after a colon")?),
                ),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => return Err("an IPv6 address goes in brackets, as [::1]".into()),
            None => (authority, None),
        },
    };
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{port:?} is not a port"))?,
    };
    Ok((host, port))
}

impl fmt::Display for HttpGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        match self.host.contains(':') {
            true => write!(f, "{scheme}://[{}]:{}", self.host, self.port),
            false => write!(f, "{scheme}://{}:{}", self.host, self.port),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_name_a_scheme_a_host_and_a_port() {
        let api = HttpGrant::parse("https://API.example.com/").unwrap();
        assert_eq!(
            api,
            HttpGrant {
                tls: true,
                host: "api.example.com".into(),
                port: 443
            }
        );
        assert_eq!(api.to_string(), "https://api.example.com:443");
        assert_eq!(HttpGrant::parse("http://10.0.0.5:8080").unwrap().port, 8080);
        let v6 = HttpGrant::parse("https://[::1]:8443").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8443));
        assert_eq!(v6.to_string(), "https://[::1]:8443");
        for bad in [
            "api.example.com",
            "ftp://api.example.com",
            "https://api.example.com/path",
            "https://*.example.com",
            "https://user@api.example.com",
            "https://api.example.com:0",
            "https://api.example.com:99999",
            "https://",
            "https://::1",
            &format!("https://{}", "a".repeat(254)),
        ] {
            let err = HttpGrant::parse(bad).unwrap_err();
            assert!(err.contains("scheme://host[:port]"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_grant_permits_its_own_scheme_host_and_port_only() {
        let api = HttpGrant::parse("https://api.example.com").unwrap();
        assert!(api.permits(true, "api.example.com"));
        assert!(api.permits(true, "API.example.com:443"));
        assert!(!api.permits(false, "api.example.com:443"), "another scheme");
        assert!(!api.permits(true, "api.example.com:8443"), "another port");
        assert!(!api.permits(true, "evil.example.com"), "another host");
        assert!(!api.permits(true, "api.example.com.evil.net"), "a longer host");
        assert!(!api.permits(true, "api.example.com:x"), "no port at all");
        let v6 = HttpGrant::parse("http://[::1]:8080").unwrap();
        assert!(v6.permits(false, "[::1]:8080"));
        assert!(!v6.permits(false, "[::2]:8080"));
    }
}
