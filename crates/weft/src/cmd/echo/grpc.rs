//! The gRPC side of `weft x echo`: the `GrpcEcho` service of Gateway API's conformance
//! suite (`gateway_api_conformance.echo_basic.grpcecho`), which GRPCRoute tests call.
//! `Echo` and `EchoTwo` answer with what the server saw (the full method name, every request
//! header including `:authority`, and the pod's context); `EchoThree` answers
//! `UNIMPLEMENTED`, as the suite expects. Calls arrive on the HTTP port: an HTTP/2 request
//! whose content type is `application/grpc` (or `application/grpc+...`) is a call.

use super::EchoIdentity;
use http::{Request, Response};
use hyper::body::Incoming;
use std::sync::Arc;
use tonic::codegen::Service as _;
use weft_proto::grpcecho::grpc_echo_server::{GrpcEcho, GrpcEchoServer};
use weft_proto::grpcecho::{Assertions, Context, EchoRequest, EchoResponse, Header};

/// Full name of the service, as it appears in a call's path.
const SERVICE: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

/// Whether a request is a gRPC call for this server to answer.
pub(super) fn is_grpc(req: &Request<Incoming>) -> bool {
    if req.version() != http::Version::HTTP_2 {
        return false;
    }
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("application/grpc"))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['+', ';']))
}

/// The generated gRPC server around the echo service of one process.
pub(super) type Server = GrpcEchoServer<EchoService>;

/// The server answering for `me`; the context's ingress and service names come from the
/// `INGRESS_NAME` and `SERVICE_NAME` environment variables, as in the suite.
pub(super) fn server(me: &EchoIdentity) -> Server {
    let context = Context {
        namespace: me.namespace.clone(),
        ingress: std::env::var("INGRESS_NAME").unwrap_or_default(),
        service_name: std::env::var("SERVICE_NAME").unwrap_or_default(),
        pod: me.pod.clone(),
    };
    GrpcEchoServer::new(EchoService {
        context: Arc::new(context),
    })
}

/// Answers one call; the request's headers and authority are recorded first, since the
/// gRPC layer keeps neither the `:authority` nor the header order.
pub(super) async fn call(
    mut server: Server,
    mut req: Request<Incoming>,
) -> Response<tonic::body::Body> {
    let seen = SeenCall::of(&req);
    req.extensions_mut().insert(seen);
    match server.call(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Headers and authority of a call as they arrived.
#[derive(Clone, Debug)]
struct SeenCall {
    authority: String,
    headers: Vec<Header>,
}

impl SeenCall {
    fn of(req: &Request<Incoming>) -> Self {
        let authority = req.uri().authority().map_or_else(
            || super::header_text(req.headers().get(http::header::HOST)),
            |authority| authority.as_str().to_owned(),
        );
        let mut headers = vec![Header {
            key: ":authority".to_owned(),
            value: authority.clone(),
        }];
        headers.extend(req.headers().iter().map(|(name, value)| Header {
            key: name.as_str().to_owned(),
            value: super::header_text(Some(value)),
        }));
        Self { authority, headers }
    }
}

/// The `GrpcEcho` implementation.
#[derive(Debug)]
pub(super) struct EchoService {
    context: Arc<Context>,
}

impl EchoService {
    fn answer(
        &self,
        method: &str,
        request: &tonic::Request<EchoRequest>,
    ) -> tonic::Response<EchoResponse> {
        let seen = request.extensions().get::<SeenCall>().cloned();
        let (authority, headers) = seen.map_or_else(Default::default, |s| (s.authority, s.headers));
        tonic::Response::new(EchoResponse {
            assertions: Some(Assertions {
                fully_qualified_method: format!("/{SERVICE}/{method}"),
                headers,
                authority,
                context: Some((*self.context).clone()),
                tls_assertions: None,
            }),
            request: Some(*request.get_ref()),
        })
    }
}

#[tonic::async_trait]
impl GrpcEcho for EchoService {
    async fn echo(
        &self,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoResponse>, tonic::Status> {
        Ok(self.answer("Echo", &request))
    }

    async fn echo_two(
        &self,
        request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoResponse>, tonic::Status> {
        Ok(self.answer("EchoTwo", &request))
    }

    async fn echo_three(
        &self,
        _request: tonic::Request<EchoRequest>,
    ) -> Result<tonic::Response<EchoResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented(
            "EchoThree is left unimplemented on purpose",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::start;
    use tonic::transport::Endpoint;
    use weft_proto::grpcecho::EchoRequest;
    use weft_proto::grpcecho::grpc_echo_client::GrpcEchoClient;

    async fn client(addr: std::net::SocketAddr) -> GrpcEchoClient<tonic::transport::Channel> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to the echo server");
        GrpcEchoClient::new(channel)
    }

    #[tokio::test]
    async fn echo_and_echo_two_report_the_call() {
        let addr = start("pod-g").await;
        let mut client = client(addr).await;
        let mut request = tonic::Request::new(EchoRequest {});
        request
            .metadata_mut()
            .insert("x-caller", "me".parse().unwrap());
        let answer = client.echo(request).await.expect("Echo").into_inner();
        let seen = answer.assertions.expect("assertions");
        assert_eq!(
            seen.fully_qualified_method,
            "/gateway_api_conformance.echo_basic.grpcecho.GrpcEcho/Echo"
        );
        assert_eq!(seen.authority, addr.to_string());
        let header = |key: &str| {
            seen.headers
                .iter()
                .find(|h| h.key == key)
                .map(|h| h.value.clone())
        };
        assert_eq!(header("x-caller").as_deref(), Some("me"));
        assert_eq!(header(":authority"), Some(addr.to_string()));
        assert_eq!(header("content-type").as_deref(), Some("application/grpc"));
        let context = seen.context.expect("context");
        assert_eq!(
            (context.pod.as_str(), context.namespace.as_str()),
            ("pod-g", "ns")
        );
        assert!(answer.request.is_some());

        let two = client.echo_two(EchoRequest {}).await.expect("EchoTwo");
        let method = two.into_inner().assertions.unwrap().fully_qualified_method;
        assert!(method.ends_with("/EchoTwo"), "{method}");
    }

    #[tokio::test]
    async fn echo_three_is_unimplemented() {
        let addr = start("pod-h").await;
        let status = client(addr)
            .await
            .echo_three(EchoRequest {})
            .await
            .expect_err("EchoThree must fail");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
    }

    #[tokio::test]
    async fn plain_http2_requests_on_the_same_connection_still_get_json() {
        // An HTTP/2 request without the gRPC content type is an ordinary echo request.
        let addr = start("pod-i").await;
        let out = super::super::tests::h2_get(addr, "/svc/Method").await;
        assert_eq!(out["proto"], "HTTP/2.0");
    }
}
