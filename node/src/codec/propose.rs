//! A forwarded command's outcome on the wire (`ProposeReply`), in the
//! format the command came in (see [`super::format`]): typed
//! (`baton.state.v1.CommandResponse`) for a command sent in binary; else
//! the response as JSON, as every release reads it, with a rejection's kind
//! beside it, typed (a JSON rejection holds only its text).

use baton_proto::ProposeReply;

use super::format::Format;
use crate::raft::Committed;
use crate::types::{CommandResponse, Rejection};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The reply a leader sends for `committed`, in `format`.
pub fn reply(committed: &Committed, format: Format) -> Result<ProposeReply, Error> {
    let rejection = match &committed.response {
        CommandResponse::Rejected(rejection) => Some(rejection.into()),
        _ => None,
    };
    Ok(match format {
        Format::Json => ProposeReply {
            response: serde_json::to_vec(&committed.response)?,
            log_index: committed.log_index,
            rejection,
            typed_response: None,
        },
        Format::Binary => ProposeReply {
            response: Vec::new(),
            log_index: committed.log_index,
            rejection,
            typed_response: Some((&committed.response).into()),
        },
    })
}

/// What a forwarding node makes of `reply`: a rejection typed when the
/// leader sent its kind, else `Unrecognized` with its text.
pub fn committed(reply: ProposeReply) -> Result<Committed, Error> {
    if let Some(typed) = reply.typed_response {
        return Ok(Committed {
            log_index: reply.log_index,
            response: CommandResponse::try_from(typed)?,
        });
    }
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
    fn a_peer_gets_every_rejection_typed_in_either_format() {
        for format in [Format::Json, Format::Binary] {
            for rejection in crate::codec::rejection::samples() {
                let sent = refused(rejection.clone());
                let wire = reply(&sent, format).unwrap();
                assert_eq!(wire.typed_response.is_some(), format == Format::Binary);
                let got = committed(wire).unwrap();
                assert_eq!(got.response, sent.response);
                assert_eq!(got.log_index, 7);
            }
            let done = Committed {
                log_index: 8,
                response: CommandResponse::Count(1),
            };
            assert_eq!(
                committed(reply(&done, format).unwrap()).unwrap().response,
                done.response
            );
        }
    }

    #[test]
    fn a_reply_from_a_release_before_typed_rejections_is_shown_by_its_text() {
        let older = ProposeReply {
            response: br#"{"rejected":"no task named x"}"#.to_vec(),
            log_index: 7,
            rejection: None,
            typed_response: None,
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
        let sent = reply(&refused(Rejection::NoSuchTask { task: "x".into() }), Format::Json).unwrap();
        assert_eq!(sent.response, br#"{"rejected":"no task named x"}"#);
    }
}
