//! A mocked Kubernetes API server driven by a scenario: the list of requests the code under test
//! must make, in order, each with its method, path and canned answer. Any other request, a
//! request the operator's RBAC table (`src/rbac.rs`) does not allow, or an expected request
//! that never comes fails the test.
//!
//! ```ignore
//! let (client, served) = mock_api::start("ns", vec![
//!     expect(Method::GET, "/api/v1/namespaces/ns/pods/p", |_| status(StatusCode::NOT_FOUND, "NotFound")),
//! ]);
//! code_under_test(client).await;
//! let writes = served.writes().await; // after every holder of the client is dropped
//! ```

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock::{Handle, SendResponse};

/// The answer to one request: status code and JSON body.
pub type Reply = (StatusCode, Value);

/// How long the server waits for the next expected request.
const PATIENCE: Duration = Duration::from_secs(5);

/// One expected request and the answer to it. The responder sees the JSON body sent (`Null`
/// when there is none), so it can check it and answer from it.
pub struct Exchange {
    method: Method,
    path: String,
    respond: Box<dyn Fn(&Value) -> Reply + Send>,
}

/// Expects `method path` (the URI's path, without the query) next.
pub fn expect(
    method: Method,
    path: impl Into<String>,
    respond: impl Fn(&Value) -> Reply + Send + 'static,
) -> Exchange {
    Exchange {
        method,
        path: path.into(),
        respond: Box::new(respond),
    }
}

/// A failure as the API server reports it, e.g. `status(StatusCode::CONFLICT, "Conflict")`.
pub fn status(code: StatusCode, reason: &str) -> Reply {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("test: {reason}"), "reason": reason, "code": code.as_u16()});
    (code, body)
}

/// A client for `namespace` and the server side that answers its requests.
pub fn pair(namespace: &str) -> (Client, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, namespace), ApiServer { handle })
}

/// Serves `scenario` in a task of its own; see [`Served::writes`].
pub fn start(namespace: &str, scenario: Vec<Exchange>) -> (Client, Served) {
    let (client, mut server) = pair(namespace);
    let task = tokio::spawn(async move {
        let writes = server.serve(scenario).await;
        server.finish().await;
        writes
    });
    (client, Served(task))
}

/// The server side of a mocked client.
pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
}

/// A request the server has read and not answered yet; dropping it unanswered fails the
/// client's call, keeping it leaves the call waiting.
pub struct Received {
    path: String,
    write: bool,
    body: Value,
    reply: SendResponse<Response<Body>>,
}

impl Received {
    /// Answers the request; returns `(path, body)` when it was a write.
    fn answer(self, (code, body): Reply) -> Option<(String, Value)> {
        let response = Response::builder()
            .status(code)
            .body(Body::from(
                serde_json::to_vec(&body).expect("reply is JSON"),
            ))
            .expect("reply is a valid response");
        self.reply.send_response(response);
        self.write.then_some((self.path, self.body))
    }
}

impl ApiServer {
    /// Reads the next request, which must be `method path` and allowed by the RBAC table.
    pub async fn next(&mut self, method: &Method, path: &str) -> Received {
        let (request, reply) = tokio::time::timeout(PATIENCE, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no request within {PATIENCE:?}, expected {method} {path}"))
            .unwrap_or_else(|| panic!("the client is gone, expected {method} {path}"));
        let uri = request.uri().clone();
        assert_eq!(
            (request.method(), uri.path()),
            (method, path),
            "unexpected request {} {uri}",
            request.method()
        );
        if let Err(e) = zookeeper_operator::rbac::check_request(method.as_str(), &uri.to_string()) {
            panic!("{method} {uri} is not allowed by the operator's RBAC table: {e}");
        }
        let write = method != Method::GET;
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        Received {
            path: path.to_string(),
            write,
            body,
            reply,
        }
    }

    /// Answers every request of `scenario` in order; returns the writes (every request but
    /// GET) as `(path, body)`.
    pub async fn serve(&mut self, scenario: Vec<Exchange>) -> Vec<(String, Value)> {
        let mut writes = Vec::new();
        for exchange in scenario {
            let received = self.next(&exchange.method, &exchange.path).await;
            let reply = (exchange.respond)(&received.body);
            writes.extend(received.answer(reply));
        }
        writes
    }

    /// Waits until the client is dropped; fails on any further request.
    pub async fn finish(mut self) {
        match tokio::time::timeout(PATIENCE, self.handle.next_request()).await {
            Ok(None) => {}
            Ok(Some((request, _))) => panic!(
                "unexpected request {} {} after the scenario",
                request.method(),
                request.uri()
            ),
            Err(_) => panic!("the client is still alive {PATIENCE:?} after the scenario"),
        }
    }
}

/// A scenario being served.
pub struct Served(JoinHandle<Vec<(String, Value)>>);

impl Served {
    /// Waits for the end of the scenario (drop every holder of the client first) and returns
    /// the writes as `(path, body)`; fails with the server's own message if it failed.
    pub async fn writes(self) -> Vec<(String, Value)> {
        match self.0.await {
            Ok(writes) => writes,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("the mocked API server did not finish: {e}"),
        }
    }
}
