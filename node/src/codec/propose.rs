//! A forwarded command's outcome on the wire (`ProposeReply`): the response
//! as JSON, as every release reads it, and a rejection's kind beside it,
//! typed (a JSON rejection holds only its text).

use baton_proto::ProposeReply;

use crate::raft::Committed;
use crate::types::{CommandResponse, Rejection};

/// The reply a leader sends for `committed`.
pub fn reply(committed: &Committed) -> Result<ProposeReply, serde_json::Error> {
    Ok(ProposeReply {
        response: serde_json::to_vec(&committed.response)?,
        log_index: committed.log_index,
        rejection: match &committed.response {
            CommandResponse::Rejected(rejection) => Some(rejection.into()),
            _ => None,
        },
    })
}

/// What a forwarding node makes of `reply`: a rejection typed when the
/// leader sent its kind, else `Unrecognized` with its text.
pub fn committed(reply: ProposeReply) -> Result<Committed, serde_json::Error> {
    let mut response = serde_json::from_slice(&reply.response)?;
    if let (CommandResponse::Rejected(rejection), Some(typed)) = (&mut response, reply.rejection) {
        *rejection = Rejection::from(typed);
    }
    Ok(Committed {
        log_index: reply.log_index,
        response,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(rejection: Rejection) -> Committed {
        Committed {
            log_index: 7,
            response: CommandResponse::Rejected(rejection),
        }
    }

    #[test]
    fn a_peer_gets_every_rejection_typed() {
        for rejection in crate::codec::rejection::samples() {
            let sent = refused(rejection.clone());
            let got = committed(reply(&sent).unwrap()).unwrap();
            assert_eq!(got.response, sent.response);
            assert_eq!(got.log_index, 7);
        }
    }

    #[test]
    fn a_reply_from_a_release_before_typed_rejections_is_shown_by_its_text() {
        let older = ProposeReply {
            response: br#"{"rejected":"no task named x"}"#.to_vec(),
            log_index: 7,
            rejection: None,
        };
        let got = committed(older).unwrap();
        assert_eq!(
            got.response,
            CommandResponse::Rejected(Rejection::Unrecognized {
                message: "no task named x".into()
            })
        );
    }

    #[test]
    fn the_json_a_release_before_typed_rejections_reads_is_unchanged() {
        let sent = reply(&refused(Rejection::NoSuchTask { task: "x".into() })).unwrap();
        assert_eq!(sent.response, br#"{"rejected":"no task named x"}"#);
    }
}
