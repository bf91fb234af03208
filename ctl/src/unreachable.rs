//! Why batonctl could not reach a node, read from the typed errors of a
//! failed connection (I/O kinds, rustls errors), never from their text,
//! and what the user can do about it.

use std::time::Duration;

/// Why an endpoint could not be reached: the connection failed, not a
/// request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreachable {
    /// The connection was refused: nothing listens at the address.
    NothingListens,
    /// No connection, TLS handshake or HTTP/2 greeting within the budget:
    /// a frozen node, or a firewall that drops packets.
    NoAnswer(Duration),
    /// The node refused this client's certificate with a TLS alert.
    CertificateRefused(String),
    /// This client did not accept the node's certificate.
    NodeCertificate(String),
    /// The node did not answer in TLS.
    NotTls,
    /// Any other connection failure, with its chain of causes.
    Other(String),
}

impl Unreachable {
    /// Whether waiting cannot mend it: certificates do not change while a
    /// command runs.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Unreachable::CertificateRefused(_) | Unreachable::NodeCertificate(_) | Unreachable::NotTls
        )
    }

    /// Whether the node refused the connection, or it cannot be made at
    /// all: not a node that may be slow.
    pub fn refuses(&self) -> bool {
        self.is_permanent() || *self == Unreachable::NothingListens
    }

    /// What the user can do about it.
    fn advice(&self, insecure: bool) -> &'static str {
        match self {
            Unreachable::NothingListens => {
                "is the node running, and is this its address (--endpoints, BATON_ENDPOINTS)?"
            }
            Unreachable::NoAnswer(_) if insecure => {
                "a frozen or overloaded node, a firewall dropping packets, or a node that expects TLS (then drop \
                 --insecure)"
            }
            Unreachable::NoAnswer(_) => "a frozen or overloaded node, or a firewall dropping packets",
            Unreachable::CertificateRefused(_) => {
                "--cert and --key (BATON_CERT, BATON_KEY) must be the admin certificate made with this cluster's CA \
                 (`batonctl certs init` writes it as admin.pem)"
            }
            Unreachable::NodeCertificate(_) => {
                "--ca (BATON_CA) must be this cluster's CA certificate, and the node's certificate must name the \
                 address you gave"
            }
            Unreachable::NotTls => "is the cluster insecure (no TLS)? then pass --insecure (BATON_INSECURE=true)",
            Unreachable::Other(_) if insecure => "if the cluster uses TLS, drop --insecure",
            Unreachable::Other(_) => "",
        }
    }
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::NothingListens => write!(f, "nothing listens there (connection refused)"),
            Unreachable::NoAnswer(budget) => write!(f, "no answer within {} ms", budget.as_millis()),
            Unreachable::CertificateRefused(alert) => {
                write!(f, "the node refused this client's certificate (TLS alert {alert})")
            }
            Unreachable::NodeCertificate(why) => write!(f, "the node's certificate was not accepted: {why}"),
            Unreachable::NotTls => write!(f, "the node does not speak TLS"),
            Unreachable::Other(why) => write!(f, "{why}"),
        }
    }
}

pub(crate) fn unreachable_message(causes: &[(String, Unreachable)], insecure: bool) -> String {
    let mut text = String::from("no node could be reached:");
    for (addr, cause) in causes {
        text.push_str(&format!("\n  {addr}: {cause}"));
        let advice = cause.advice(insecure);
        if !advice.is_empty() {
            text.push_str(&format!("; {advice}"));
        }
    }
    text
}

/// Why a connection failed, read from the typed errors in `error`'s source
/// chain; `None` when nothing there says the connection failed.
pub fn unreachable_cause(error: &(dyn std::error::Error + 'static)) -> Option<Unreachable> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return Some(tls_cause(tls));
        }
        // tonic's own connect timeout, when it ends a reconnect first.
        if error.is::<tokio::time::error::Elapsed>() {
            return Some(Unreachable::NoAnswer(crate::client::CONNECT_BUDGET));
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            // An I/O error's `source` skips the error it wraps: look inside.
            if let Some(cause) = io.get_ref().and_then(|inner| unreachable_cause(inner)) {
                return Some(cause);
            }
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return Some(Unreachable::NothingListens);
            }
        }
        next = error.source();
    }
    None
}

fn tls_cause(error: &rustls::Error) -> Unreachable {
    use rustls::AlertDescription as Alert;
    match error {
        rustls::Error::AlertReceived(
            alert @ (Alert::BadCertificate
            | Alert::UnsupportedCertificate
            | Alert::CertificateRevoked
            | Alert::CertificateExpired
            | Alert::CertificateUnknown
            | Alert::UnknownCA
            | Alert::AccessDenied
            | Alert::CertificateRequired
            // What a rustls node sends for a certificate of another CA.
            | Alert::DecryptError),
        ) => Unreachable::CertificateRefused(format!("{alert:?}")),
        rustls::Error::InvalidCertificate(_) => Unreachable::NodeCertificate(error.to_string()),
        rustls::Error::InvalidMessage(_) => Unreachable::NotTls,
        _ => Unreachable::Other(format!("TLS: {error}")),
    }
}

/// `error` and its causes, each once.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use tonic::Status;

    use super::*;

    #[test]
    fn causes_are_read_from_the_typed_errors_in_the_chain() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(unreachable_cause(&refused), Some(Unreachable::NothingListens));
        // rustls errors reach us wrapped in I/O errors, whose `source` skips them.
        let alert = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        );
        let status = Status::from_error(Box::new(alert));
        assert_eq!(
            unreachable_cause(&status),
            Some(Unreachable::CertificateRefused("UnknownCA".into()))
        );
        let issuer = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(matches!(
            unreachable_cause(&issuer),
            Some(Unreachable::NodeCertificate(_))
        ));
        let garbage = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert_eq!(unreachable_cause(&garbage), Some(Unreachable::NotTls));
        // An answer, even a refusal, is no connection failure; nor are the words.
        assert_eq!(unreachable_cause(&Status::unavailable("connection refused")), None);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(unreachable_cause(&reset), None);
    }
}
