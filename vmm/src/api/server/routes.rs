//! Which request line means which [`ApiRequest`], and which answer means
//! which HTTP response. Pure functions: no I/O, so they test in isolation.

use super::http::Reply;
use crate::api::{ApiRequest, ApiResponse};

/// How a route turns the request body into the action.
type Parse = fn(&[u8]) -> Result<ApiRequest, String>;

struct Route {
    path: &'static str,
    method: &'static str,
    /// The Allow header sent with 405.
    allow: &'static str,
    parse: Parse,
}

const fn put(path: &'static str, parse: Parse) -> Route {
    Route {
        path,
        method: "PUT",
        allow: "PUT",
        parse,
    }
}

const fn get(path: &'static str, parse: Parse) -> Route {
    Route {
        path,
        method: "GET",
        allow: "GET, HEAD",
        parse,
    }
}

/// A JSON body of type `T`, with a message that says what was wrong.
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    if body.is_empty() {
        return Err("this request needs a JSON body".to_string());
    }
    serde_json::from_slice(body).map_err(|e| format!("bad JSON body: {e}"))
}

const ROUTES: [Route; 10] = [
    get("/vm", |_| Ok(ApiRequest::GetVmInfo)),
    put("/vm/pause", |_| Ok(ApiRequest::Pause)),
    put("/vm/resume", |_| Ok(ApiRequest::Resume)),
    put("/vm/shutdown", |_| Ok(ApiRequest::Shutdown)),
    put("/vm/reboot", |_| Ok(ApiRequest::Reboot)),
    put("/vm/snapshot", |b| json(b).map(ApiRequest::Snapshot)),
    put("/vm/migrate", |b| json(b).map(ApiRequest::Migrate)),
    get("/vm/migration", |_| Ok(ApiRequest::GetMigration)),
    put("/vm/migration/cancel", |_| Ok(ApiRequest::CancelMigration)),
    put("/vm/ctrl-alt-del", |_| Ok(ApiRequest::CtrlAltDel)),
];

/// The path part of a request target: no scheme and authority (absolute
/// form, which RFC 9112 3.2.2 says servers must accept), no query, no fragment.
fn path_of(target: &str) -> &str {
    let after_scheme = ["http://", "https://"]
        .iter()
        .find_map(|scheme| target.strip_prefix(scheme));
    let path = match after_scheme {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    path.split(['?', '#']).next().unwrap_or(path)
}

/// Maps a method, target and body to the action asked of the VMM, or to the
/// error response (404, 405, or 400 for a body that does not parse).
pub(super) fn route(method: &str, target: &str, body: &[u8]) -> Result<ApiRequest, Reply> {
    let path = path_of(target);
    // "/vm/" and "/vm" name the same thing; nobody means the difference.
    let trimmed = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    if let Some(rest) = trimmed.strip_prefix("/vm/disks/") {
        return disk_route(method, rest, body);
    }
    let Some(route) = ROUTES.iter().find(|r| r.path == trimmed) else {
        return Err(Reply::error(404, &format!("no such resource: {path}")));
    };
    // HEAD is GET without the body (RFC 9110 9.3.2).
    let head_of_get = method == "HEAD" && route.method == "GET";
    if method == route.method || head_of_get {
        return (route.parse)(body).map_err(|why| Reply::error(400, &why));
    }
    let message = format!(
        "method {method} is not allowed on {}; use {}",
        route.path, route.allow
    );
    Err(Reply::error(405, &message).with_allow(route.allow))
}

/// `/vm/disks/{id}/overlay` (PUT) and `/vm/disks/{id}/commit` (PUT starts,
/// GET shows progress); `rest` is what follows `/vm/disks/`.
fn disk_route(method: &str, rest: &str, body: &[u8]) -> Result<ApiRequest, Reply> {
    let Some((id, action)) = rest.split_once('/').filter(|(id, _)| !id.is_empty()) else {
        return Err(Reply::error(
            404,
            &format!("no such resource: /vm/disks/{rest}"),
        ));
    };
    let (id, get) = (id.to_string(), method == "GET" || method == "HEAD");
    match (action, method) {
        ("overlay", "PUT") => json(body).map(|b| ApiRequest::DiskOverlay(id, b)),
        ("commit", "PUT") => Ok(ApiRequest::DiskCommit(id)),
        ("commit", _) if get => Ok(ApiRequest::GetDiskCommit(id)),
        ("overlay", _) => return Err(method_not_allowed(method, "/vm/disks/{id}/overlay", "PUT")),
        ("commit", _) => {
            return Err(method_not_allowed(
                method,
                "/vm/disks/{id}/commit",
                "GET, HEAD, PUT",
            ))
        }
        _ => {
            return Err(Reply::error(
                404,
                &format!("no such resource: /vm/disks/{rest}"),
            ))
        }
    }
    .map_err(|why| Reply::error(400, &why))
}

fn method_not_allowed(method: &str, path: &str, allow: &'static str) -> Reply {
    let message = format!("method {method} is not allowed on {path}; use {allow}");
    Reply::error(405, &message).with_allow(allow)
}

/// Turns the event loop's answer into the HTTP response.
pub(super) fn reply_for(request: &ApiRequest, response: ApiResponse) -> Reply {
    let wants_body = matches!(
        request,
        ApiRequest::GetVmInfo | ApiRequest::GetMigration | ApiRequest::GetDiskCommit(_)
    );
    match response {
        ApiResponse::VmInfo(info) if *request == ApiRequest::GetVmInfo => Reply::json(200, &*info),
        ApiResponse::Json(value) if wants_body => Reply::json(200, &value),
        ApiResponse::Conflict(message) => Reply::error(409, &message),
        ApiResponse::BadRequest(message) => Reply::error(400, &message),
        ApiResponse::Failed(message) => Reply::error(500, &message),
        ApiResponse::Done if !wants_body => Reply::no_content(),
        ApiResponse::Accepted if !wants_body => Reply::accepted(),
        _ => unexpected(request),
    }
}

/// An event loop bug, reported rather than guessed around.
fn unexpected(request: &ApiRequest) -> Reply {
    Reply::error(
        500,
        &format!("the VMM gave an answer that does not fit {request:?}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_reduce_to_paths() {
        assert_eq!(path_of("/vm?verbose=1"), "/vm");
        assert_eq!(path_of("/vm/pause#x"), "/vm/pause");
        assert_eq!(path_of("http://localhost/vm/?a"), "/vm/");
        assert_eq!(path_of("http://localhost"), "/");
    }

    #[test]
    fn routes_match_methods_and_paths() {
        let route = |m, t| route(m, t, b"");
        assert_eq!(route("GET", "/vm"), Ok(ApiRequest::GetVmInfo));
        assert_eq!(route("HEAD", "/vm/"), Ok(ApiRequest::GetVmInfo));
        assert_eq!(route("PUT", "/vm/pause/?now"), Ok(ApiRequest::Pause));
        assert_eq!(route("PUT", "/vm/reboot"), Ok(ApiRequest::Reboot));
        assert_eq!(route("PUT", "/vm/ctrl-alt-del"), Ok(ApiRequest::CtrlAltDel));
        let not_found = route("GET", "/vms?x").unwrap_err();
        assert_eq!(not_found.status, 404);
        assert_eq!(
            not_found.body.as_deref(),
            Some(&br#"{"error":"no such resource: /vms"}"#[..])
        );
        assert_eq!(route("GET", "/").unwrap_err().status, 404);
        let wrong = route("POST", "/vm/resume").unwrap_err();
        assert_eq!((wrong.status, wrong.allow), (405, Some("PUT")));
        let wrong = route("PUT", "/vm").unwrap_err();
        assert_eq!((wrong.status, wrong.allow), (405, Some("GET, HEAD")));
    }

    #[test]
    fn bodies_parse_into_requests_or_say_what_is_wrong() {
        let snap = route("PUT", "/vm/snapshot", br#"{"dir": "/tmp/s"}"#);
        assert_eq!(
            snap,
            Ok(ApiRequest::Snapshot(crate::api::SnapshotRequest {
                dir: "/tmp/s".into()
            }))
        );
        let missing = route("PUT", "/vm/snapshot", b"").unwrap_err();
        assert_eq!(missing.status, 400);
        let unknown = route("PUT", "/vm/snapshot", br#"{"dir":"/x","oops":1}"#).unwrap_err();
        assert!(String::from_utf8_lossy(unknown.body.as_deref().unwrap()).contains("oops"));
        let migrate = route("PUT", "/vm/migrate", br#"{"url":"tcp://10.0.0.2:4444"}"#);
        let Ok(ApiRequest::Migrate(m)) = migrate else {
            panic!("{migrate:?}");
        };
        assert_eq!((m.max_downtime_ms, m.auto_converge), (300, true));
        assert_eq!(
            route("PUT", "/vm/migrate", b"{\"url\":")
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn disk_routes_carry_the_disk_id() {
        let overlay = route(
            "PUT",
            "/vm/disks/disk0/overlay",
            br#"{"path":"/x/o.qcow2"}"#,
        );
        let Ok(ApiRequest::DiskOverlay(id, body)) = overlay else {
            panic!("{overlay:?}");
        };
        assert_eq!(
            (id.as_str(), body.path.to_str()),
            ("disk0", Some("/x/o.qcow2"))
        );
        assert_eq!(
            route("PUT", "/vm/disks/d1/commit", b""),
            Ok(ApiRequest::DiskCommit("d1".into()))
        );
        assert_eq!(
            route("GET", "/vm/disks/d1/commit/", b""),
            Ok(ApiRequest::GetDiskCommit("d1".into()))
        );
        assert_eq!(
            route("PUT", "/vm/disks/d1/overlay", b"")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            route("GET", "/vm/disks/d1/overlay", b"")
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(
            route("PUT", "/vm/disks//commit", b"").unwrap_err().status,
            404
        );
        assert_eq!(
            route("PUT", "/vm/disks/d1/merge", b"").unwrap_err().status,
            404
        );
        let json = ApiResponse::Json(serde_json::json!({"phase": "overlay"}));
        assert_eq!(
            reply_for(&ApiRequest::GetDiskCommit("d".into()), json).status,
            200
        );
    }

    #[test]
    fn answers_map_to_statuses() {
        let status = |req: ApiRequest, resp| reply_for(&req, resp).status;
        assert_eq!(status(ApiRequest::Pause, ApiResponse::Done), 204);
        let conflict = ApiResponse::Conflict("already running".into());
        assert_eq!(status(ApiRequest::Resume, conflict), 409);
        let failed = ApiResponse::Failed("KVM said no".into());
        assert_eq!(status(ApiRequest::Reboot, failed), 500);
        assert_eq!(status(ApiRequest::GetVmInfo, ApiResponse::Done), 500);
        assert_eq!(
            status(ApiRequest::CancelMigration, ApiResponse::Accepted),
            202
        );
        let json = ApiResponse::Json(serde_json::json!({"phase": "idle"}));
        assert_eq!(status(ApiRequest::GetMigration, json), 200);
    }
}
