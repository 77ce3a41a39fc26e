//! The control-plane process serves `weft.l7.v1.Waypoint` over delta ADS: a client
//! subscribed to that type (as a waypoint is) receives the example mesh's waypoint with its
//! services, routes and L7 policy, and an edit of the HTTPRoute arrives as a new version of
//! that one resource.

mod process_support;

use process_support::client::{AdsClient, tls_channel};
use process_support::control::{NODE_A_TOKEN, copy_examples, start_control};
use prost::Message;
use std::time::Duration;
use weft_proto::WAYPOINT_TYPE_URL;
use weft_proto::discovery::DeltaDiscoveryResponse;
use weft_proto::l7::Waypoint;

const WAIT: Duration = Duration::from_secs(20);
const NODE_ID: &str = "waypoint~10.244.1.9~waypoint.shop~shop.svc.cluster.local";
const NAME: &str = "shop/waypoint";
const REVIEWS: &str = "shop/reviews.shop.svc.cluster.local";

fn waypoint(response: &DeltaDiscoveryResponse) -> Waypoint {
    assert_eq!(response.type_url, WAYPOINT_TYPE_URL);
    let resource = response
        .resources
        .iter()
        .find(|r| r.name == NAME)
        .unwrap_or_else(|| panic!("{NAME} in {:?}", response.resources));
    let body = resource.resource.as_ref().expect("body");
    assert_eq!(body.type_url, WAYPOINT_TYPE_URL);
    Waypoint::decode(body.value.as_slice()).expect("a Waypoint")
}

/// Weights of the reviews route's last rule.
fn split(waypoint: &Waypoint) -> Vec<u32> {
    let reviews = waypoint
        .services
        .iter()
        .find(|s| s.key == REVIEWS)
        .expect("reviews");
    let rule = reviews.routes[0].rules.last().expect("a rule");
    rule.backends.iter().map(|b| b.weight).collect()
}

#[tokio::test]
async fn a_waypoint_receives_its_resource_and_each_route_edit() {
    let control = start_control(copy_examples).await;
    let channel = tls_channel(control.addrs.secure, &control.root_pem())
        .await
        .expect("TLS to the secure port");
    let mut ads = AdsClient::open(channel, Some(NODE_A_TOKEN), NODE_ID, &[WAYPOINT_TYPE_URL])
        .await
        .expect("stream opens");
    let initial = waypoint(&ads.recv_ack(WAIT).await.expect("initial response"));
    assert_eq!(
        (initial.namespace.as_str(), initial.name.as_str()),
        ("shop", "waypoint")
    );
    assert_eq!(split(&initial), [90, 10]);
    let policy = initial.policies[0].policy.as_ref().expect("policy");
    assert_eq!(policy.name, "reviews-deny-admin");
    let version = ads.held(WAYPOINT_TYPE_URL)[NAME].clone();

    let route_file = control.config_dir().join("reviews.yaml");
    let text = std::fs::read_to_string(&route_file).expect("reviews.yaml");
    let edited = text
        .replace("weight: 90", "weight: 50")
        .replace("weight: 10", "weight: 50");
    assert_ne!(edited, text, "the example route has a 90/10 split");
    std::fs::write(&route_file, edited).expect("edit");
    let update = ads.recv_ack(WAIT).await.expect("the edit arrives");
    let names: Vec<&str> = update.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, [NAME]);
    assert_eq!(split(&waypoint(&update)), [50, 50]);
    assert_ne!(ads.held(WAYPOINT_TYPE_URL)[NAME], version);
}
