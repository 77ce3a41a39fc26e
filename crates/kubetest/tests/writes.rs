//! Writes through the `kube` client against the test API server: create, update with
//! resourceVersion conflicts, delete, server-side apply with field-manager conflicts, and
//! TokenReview answered as the real API answers for projected tokens.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use weft_kubetest::TestApiServer;
use weft_kubetest::routes::tokenreview::TokenInfo;

fn lease(holder: &str) -> Lease {
    Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("leader".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            ..Default::default()
        }),
    }
}

fn api_code(error: &kube::Error) -> u16 {
    match error {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn create_conflicts_on_a_second_create_and_update_on_a_stale_resource_version() {
    let server = TestApiServer::start().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), "weft-system");
    let created = leases
        .create(&PostParams::default(), &lease("a"))
        .await
        .expect("create");
    let again = leases.create(&PostParams::default(), &lease("b")).await;
    assert_eq!(api_code(&again.expect_err("second create")), 409);

    let mut first = created.clone();
    first.spec.as_mut().expect("spec").holder_identity = Some("a2".into());
    let updated = leases
        .replace("leader", &PostParams::default(), &first)
        .await
        .expect("update");
    assert_ne!(
        updated.metadata.resource_version,
        created.metadata.resource_version
    );

    let mut stale = created;
    stale.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    let refused = leases
        .replace("leader", &PostParams::default(), &stale)
        .await;
    let error = refused.expect_err("stale update");
    assert_eq!(api_code(&error), 409);
    assert!(error.to_string().contains("has been modified"), "{error}");
    let stored = leases.get("leader").await.expect("get");
    assert_eq!(
        stored.spec.expect("spec").holder_identity.as_deref(),
        Some("a2")
    );

    leases
        .delete("leader", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(leases.get_opt("leader").await.expect("get").is_none());
    let missing = leases.delete("leader", &DeleteParams::default()).await;
    assert_eq!(api_code(&missing.expect_err("second delete")), 404);
}

#[tokio::test]
async fn apply_conflicts_with_another_managers_field_unless_forced() {
    let server = TestApiServer::start().await;
    let maps: Api<ConfigMap> = Api::namespaced(server.client(), "shop");
    let doc = |value: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "settings", "namespace": "shop"},
               "data": {"color": value}})
    };
    let created = maps
        .patch(
            "settings",
            &PatchParams::apply("weft"),
            &Patch::Apply(doc("blue")),
        )
        .await
        .expect("apply creates");
    let managers = created.metadata.managed_fields.expect("managed fields");
    assert_eq!(managers[0].manager.as_deref(), Some("weft"));

    let refused = maps
        .patch(
            "settings",
            &PatchParams::apply("other"),
            &Patch::Apply(doc("red")),
        )
        .await
        .expect_err("conflict");
    assert_eq!(api_code(&refused), 409);
    assert!(
        refused
            .to_string()
            .contains("conflict with \"weft\": .data.color"),
        "{refused}"
    );

    let forced = maps
        .patch(
            "settings",
            &PatchParams::apply("other").force(),
            &Patch::Apply(doc("red")),
        )
        .await
        .expect("forced apply");
    assert_eq!(forced.data.expect("data")["color"], "red");
    let owners: Vec<String> = forced
        .metadata
        .managed_fields
        .expect("managed fields")
        .into_iter()
        .filter_map(|entry| entry.manager)
        .collect();
    assert_eq!(owners, ["other"]);
}

#[tokio::test]
async fn token_reviews_answer_registered_tokens_with_their_pod() {
    let server = TestApiServer::start().await;
    server.register_token(
        "node-token",
        TokenInfo::new("weft-system", "weft-node", "istio-ca").bound_to("weft-node-x1", "uid-7"),
    );
    let reviews: Api<TokenReview> = Api::all(server.client());
    let review = |token: &str, audience: &str| TokenReview {
        spec: TokenReviewSpec {
            token: token.into(),
            audiences: Some(vec![audience.into()]),
        },
        ..Default::default()
    };
    let answer = reviews
        .create(&PostParams::default(), &review("node-token", "istio-ca"))
        .await
        .expect("review");
    let status = answer.status.expect("status");
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.audiences, Some(vec!["istio-ca".to_owned()]));
    let user = status.user.expect("user");
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:weft-system:weft-node")
    );
    let extra = user.extra.expect("extra");
    assert_eq!(
        extra["authentication.kubernetes.io/pod-name"],
        ["weft-node-x1"]
    );
    assert_eq!(extra["authentication.kubernetes.io/pod-uid"], ["uid-7"]);

    for (token, audience) in [("node-token", "other"), ("unknown", "istio-ca")] {
        let answer = reviews
            .create(&PostParams::default(), &review(token, audience))
            .await
            .expect("review");
        let status = answer.status.expect("status");
        assert_eq!(status.authenticated, Some(false), "{token} for {audience}");
        assert!(status.error.is_some());
    }
    assert_eq!(server.tokens().reviews(), 3);
}
