//! Which request line means which [`ApiRequest`], and which answer means
//! which HTTP response. Pure functions: no I/O, so they test in isolation.

use super::http::Reply;
use crate::api::{ApiRequest, ApiResponse};

struct Route {
    path: &'static str,
    method: &'static str,
    /// The Allow header sent with 405.
    allow: &'static str,
    request: ApiRequest,
}

const fn put(path: &'static str, request: ApiRequest) -> Route {
    Route {
        path,
        method: "PUT",
        allow: "PUT",
        request,
    }
}

const ROUTES: [Route; 6] = [
    Route {
        path: "/vm",
        method: "GET",
        allow: "GET, HEAD",
        request: ApiRequest::GetVmInfo,
    },
    put("/vm/pause", ApiRequest::Pause),
    put("/vm/resume", ApiRequest::Resume),
    put("/vm/shutdown", ApiRequest::Shutdown),
    put("/vm/reboot", ApiRequest::Reboot),
    put("/vm/ctrl-alt-del", ApiRequest::CtrlAltDel),
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

/// Maps a method and target to the action asked of the VMM, or to the error
/// response (404 or 405) if there is no such action.
pub(super) fn route(method: &str, target: &str) -> Result<ApiRequest, Reply> {
    let path = path_of(target);
    // "/vm/" and "/vm" name the same thing; nobody means the difference.
    let trimmed = match path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    let Some(route) = ROUTES.iter().find(|r| r.path == trimmed) else {
        return Err(Reply::error(404, &format!("no such resource: {path}")));
    };
    // HEAD is GET without the body (RFC 9110 9.3.2).
    let head_of_get = method == "HEAD" && route.method == "GET";
    if method == route.method || head_of_get {
        return Ok(route.request);
    }
    let message = format!(
        "method {method} is not allowed on {}; use {}",
        route.path, route.allow
    );
    Err(Reply::error(405, &message).with_allow(route.allow))
}

/// Turns the event loop's answer into the HTTP response.
pub(super) fn reply_for(request: ApiRequest, response: ApiResponse) -> Reply {
    match (request, response) {
        (ApiRequest::GetVmInfo, ApiResponse::VmInfo(info)) => Reply::json(200, &*info),
        (_, ApiResponse::Conflict(message)) => Reply::error(409, &message),
        (_, ApiResponse::Failed(message)) => Reply::error(500, &message),
        (ApiRequest::GetVmInfo, ApiResponse::Done) => unexpected(request),
        (_, ApiResponse::Done) => Reply::no_content(),
        (_, ApiResponse::VmInfo(_)) => unexpected(request),
    }
}

/// An event loop bug, reported rather than guessed around.
fn unexpected(request: ApiRequest) -> Reply {
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
    fn answers_map_to_statuses() {
        let status = |req, resp| reply_for(req, resp).status;
        assert_eq!(status(ApiRequest::Pause, ApiResponse::Done), 204);
        let conflict = ApiResponse::Conflict("already running".into());
        assert_eq!(status(ApiRequest::Resume, conflict), 409);
        let failed = ApiResponse::Failed("KVM said no".into());
        assert_eq!(status(ApiRequest::Reboot, failed), 500);
        assert_eq!(status(ApiRequest::GetVmInfo, ApiResponse::Done), 500);
    }
}
