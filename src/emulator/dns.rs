//! DNS for the names the emulator serves, as Route 53 answers for a custom domain: A and AAAA
//! for a served name, NXDOMAIN for any other, so that Envoy's resolver finds the emulator.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long answers may be cached: short, the emulator's address can change between runs.
const TTL: u32 = 5;

/// Answers queries on `socket` until `shutdown`, for the names `names` holds at the time.
pub async fn serve(
    socket: UdpSocket,
    names: watch::Receiver<Arc<BTreeSet<String>>>,
    answer: IpAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; 4096];
    loop {
        let (length, peer) = tokio::select! {
            received = socket.recv_from(&mut buffer) => received?,
            () = shutdown.cancelled() => return Ok(()),
        };
        let served = Arc::clone(&names.borrow());
        let Some(reply) = respond(&buffer[..length], &served, answer) else {
            continue;
        };
        if let Err(error) = socket.send_to(&reply, peer).await {
            tracing::debug!(%peer, %error, "cannot send a DNS answer");
        }
    }
}

/// The reply to one query message; `None` for what is not a DNS query.
pub fn respond(query: &[u8], names: &BTreeSet<String>, answer: IpAddr) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    if query.message_type() != MessageType::Query {
        return None;
    }
    let mut reply = Message::new();
    reply
        .set_id(query.id())
        .set_message_type(MessageType::Response)
        .set_op_code(query.op_code())
        .set_recursion_desired(query.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true);
    let mut known = true;
    for question in query.queries() {
        reply.add_query(question.clone());
        let name = question
            .name()
            .to_ascii()
            .trim_end_matches('.')
            .to_ascii_lowercase();
        if !names.contains(&name) {
            known = false;
            continue;
        }
        let data = match (question.query_type(), answer) {
            (RecordType::A, IpAddr::V4(v4)) => RData::A(A(v4)),
            (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(v6)),
            // A served name without an address of this family: an empty answer.
            _ => continue,
        };
        reply.add_answer(Record::from_rdata(question.name().clone(), TTL, data));
    }
    if !known {
        reply.set_response_code(ResponseCode::NXDomain);
    }
    reply.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    fn ask(name: &str, kind: RecordType) -> Message {
        let mut query = Message::new();
        query
            .set_id(7)
            .add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        let names: BTreeSet<String> = ["demo-cluster2.example.com".to_string()].into();
        let reply = respond(
            &query.to_vec().unwrap(),
            &names,
            "127.0.0.1".parse().unwrap(),
        )
        .unwrap();
        Message::from_vec(&reply).unwrap()
    }

    #[test]
    fn served_names_resolve_to_the_emulator_and_others_do_not_exist() {
        let found = ask("Demo-Cluster2.example.com.", RecordType::A);
        assert_eq!(found.id(), 7);
        assert_eq!(found.response_code(), ResponseCode::NoError);
        assert_eq!(found.answers().len(), 1);
        assert_eq!(
            found.answers()[0].data(),
            &RData::A(A("127.0.0.1".parse().unwrap()))
        );
        let ipv6 = ask("demo-cluster2.example.com.", RecordType::AAAA);
        assert_eq!(ipv6.response_code(), ResponseCode::NoError);
        assert!(ipv6.answers().is_empty());
        let missing = ask("elsewhere.example.com.", RecordType::A);
        assert_eq!(missing.response_code(), ResponseCode::NXDomain);
    }
}
