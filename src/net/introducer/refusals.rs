//! The introducer's refusals, in process: a punch or relay order sent to a listener's
//! server (anyone can open a stream there) is refused, whether or not it introduces;
//! a relay asked of an introducer without `--relay` is refused; an introduction to an
//! unknown fingerprint says so.

use std::sync::Arc;
use std::time::Duration;

use super::wire::{Request, Status};
use super::{ask, AskError, IntroducerService};
use crate::net::server::{Handler, Router, Stream};
use crate::net::testing::client_endpoint;
use crate::net::tls::{Fingerprint, Identity, TrustRules};
use crate::{Endpoint, Server, ServerConfig, TransportOptions};

struct Nothing;

impl Handler for Nothing {
    async fn message(&self, stream: Stream) {
        drop(stream);
    }
}

/// A server on loopback; with `introduce`, an introducer without a relay.
fn server(introduce: bool) -> (Endpoint, Fingerprint) {
    let id = Arc::new(Identity::ephemeral().unwrap());
    let fp = id.fingerprint;
    let ep = Endpoint::bind(
        "127.0.0.1:0".parse().unwrap(),
        id,
        TransportOptions::default(),
        Some(TrustRules::any()),
    )
    .unwrap();
    let server = Server::new(ep.clone(), ServerConfig::unlimited());
    let mut router = Router::new(Nothing);
    if introduce {
        router = router.introducer(IntroducerService::new(None));
    }
    tokio::spawn(async move { server.run(router, std::future::pending()).await });
    (ep, fp)
}

async fn asked(introduce: bool, request: Request) -> Result<super::wire::Answer, AskError> {
    let (ep, fp) = server(introduce);
    let client = client_endpoint(Duration::from_secs(2));
    let conn = client
        .connect(ep.local_addr().unwrap(), TrustRules::pinned_to(fp))
        .await
        .unwrap();
    ask(&conn, &request, Duration::from_secs(5)).await
}

#[tokio::test]
async fn orders_sent_to_a_server_are_refused_whether_or_not_it_introduces() {
    let orders = [
        Request::Punch {
            toward: "198.51.100.7:9".parse().unwrap(),
            requester: Fingerprint([1; 32]),
        },
        Request::RelayOrder {
            relay: "198.51.100.7:9".parse().unwrap(),
            nonce: [0; 16],
        },
    ];
    for introduce in [false, true] {
        for order in &orders {
            let got = asked(introduce, order.clone()).await;
            assert!(
                matches!(&got, Err(AskError::Refused(why)) if why.contains("unsupported") || why.contains("not supported")),
                "{order:?} (introduce {introduce}): {got:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_plain_listener_refuses_introductions() {
    let got = asked(
        false,
        Request::Introduce {
            target: Fingerprint([2; 32]),
        },
    )
    .await;
    assert!(matches!(got, Err(AskError::Refused(_))), "{got:?}");
}

#[tokio::test]
async fn unknown_listeners_and_a_missing_relay_are_said_so() {
    let target = Fingerprint([3; 32]);
    let got = asked(true, Request::Introduce { target }).await.unwrap();
    assert_eq!(got.status, Status::Unknown);
    assert!(!got.relay, "no relay offered without --relay");
    let got = asked(true, Request::Relay { target }).await.unwrap();
    assert_eq!(got.status, Status::Refused);
}

#[tokio::test]
async fn introductions_are_rate_limited_per_address() {
    let (ep, fp) = server(true);
    let client = client_endpoint(Duration::from_secs(2));
    let conn = client
        .connect(ep.local_addr().unwrap(), TrustRules::pinned_to(fp))
        .await
        .unwrap();
    let ask_once = || async {
        let request = Request::Introduce {
            target: Fingerprint([4; 32]),
        };
        ask(&conn, &request, Duration::from_secs(5))
            .await
            .unwrap()
            .status
    };
    for _ in 0..super::INTRODUCTIONS_PER_WINDOW {
        assert_eq!(ask_once().await, Status::Unknown);
    }
    assert_eq!(ask_once().await, Status::Busy);
}
