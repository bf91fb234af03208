//! The status page's shell: it reads what a page shows through the same
//! Control calls `batonctl` makes (in-process, so the page and the CLI
//! cannot disagree), renders it with [`super::pages`], streams changes as
//! server-sent events, and takes manual steps from a signed-in reader.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use baton_proto::control_server::Control;
use baton_proto::{ControlRolloutRequest, ControlUpgradeRequest, DrainNodeRequest, RolloutAction, TaskRequest};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;

use super::admin_token::{AdminToken, COOKIE, presented, same_origin};
use super::html::{Access, Layout, Section, escape};
use super::pages::{self, Context};
use super::task_rows::{TaskFilter, TaskRow, task_page};
use crate::api::{ControlService, NodeContext};
use crate::state::history::TickRecord;

/// How often a live page is rendered again (and sent when it changed).
const LIVE_EVERY: Duration = Duration::from_secs(1);

struct Site {
    context: Arc<NodeContext>,
    control: ControlService,
    token: Option<AdminToken>,
}

/// The status page's routes, to merge into the node's plain-HTTP listener.
pub fn router(context: Arc<NodeContext>, token: Option<AdminToken>) -> Router {
    let site = Arc::new(Site {
        control: ControlService::new(context.clone()),
        context,
        token,
    });
    Router::new()
        .route("/live", get(live))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/act", post(act))
        .fallback(get(page))
        .with_state(site)
}

impl Site {
    fn access(&self, headers: &HeaderMap) -> Access {
        let Some(token) = &self.token else {
            return Access::ReadOnly;
        };
        let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
        match token.admits(presented(header(header::AUTHORIZATION), header(header::COOKIE))) {
            true => Access::SignedIn,
            false => Access::SignedOut,
        }
    }

    /// The page at `uri`: its section, title, the part above its live part,
    /// and the live part; `None` for an address that is no page.
    async fn view(&self, uri: &Uri, can_act: bool) -> Option<View> {
        let back = without_notice(uri);
        let cx = Context {
            now_ms: crate::types::now_ms(),
            can_act,
            back: &back,
        };
        let path = uri.path();
        let view = match path {
            "/" => {
                let status = self.control.status_here().await;
                let (rollouts, upgrade) = self.rollouts_and_upgrade().await;
                View::new(
                    Section::Overview,
                    "Overview",
                    pages::overview(&status, &rollouts, &upgrade, cx),
                )
            }
            "/nodes" => {
                let status = self.control.status_here().await;
                View::new(Section::Nodes, "Nodes", pages::nodes(&status, cx))
            }
            "/modules" => {
                let modules = self
                    .control
                    .list_modules(Request::new(Default::default()))
                    .await
                    .map(|r| r.into_inner())
                    .unwrap_or_default();
                let (rollouts, upgrade) = self.rollouts_and_upgrade().await;
                View::new(
                    Section::Modules,
                    "Modules",
                    pages::modules(&modules, &rollouts, &upgrade, cx),
                )
            }
            "/tasks" => {
                let filter = Query::<TaskFilter>::try_from_uri(uri).map(|q| q.0).unwrap_or_default();
                let page = self.context.state_machine.read(|s| task_page(s, &filter));
                let mut view = View::new(Section::Tasks, "Tasks", pages::tasks(&page, &filter, cx));
                view.above = pages::task_filter_form(&filter, &page.modules);
                view
            }
            _ => {
                let name = path.strip_prefix("/tasks/")?;
                let found = self.context.state_machine.read(|s| {
                    let task = s.tasks.get(name)?;
                    Some((TaskRow::of(task), task.history.iter().collect::<Vec<TickRecord>>()))
                });
                let info = self
                    .control
                    .show_task(Request::new(TaskRequest { name: name.to_string() }))
                    .await
                    .ok()
                    .and_then(|r| r.into_inner().task);
                let ((row, history), info) = (found?, info?);
                let html = pages::task(&info, &row, &history, cx);
                View::new(Section::Tasks, &format!("Task {name}"), html)
            }
        };
        Some(view)
    }

    async fn rollouts_and_upgrade(&self) -> (baton_proto::RolloutStatusReply, baton_proto::UpgradeStatusReply) {
        let rollouts = self
            .control
            .rollout_status(Request::new(Default::default()))
            .await
            .map(|r| r.into_inner())
            .unwrap_or_default();
        let upgrade = self
            .control
            .upgrade_status(Request::new(Default::default()))
            .await
            .map(|r| r.into_inner())
            .unwrap_or_default();
        (rollouts, upgrade)
    }

    fn layout(&self, view: &View, access: Access, notice: Option<&str>) -> String {
        Layout {
            title: &view.title,
            section: view.section,
            access,
            node: self.context.id,
            cluster: &self.context.cluster_id,
            notice,
            above: &view.above,
            live: &view.live,
        }
        .render()
    }
}

struct View {
    section: Section,
    title: String,
    above: String,
    live: String,
}

impl View {
    fn new(section: Section, title: &str, live: String) -> View {
        View {
            section,
            title: title.to_string(),
            above: String::new(),
            live,
        }
    }
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NoticeQuery {
    notice: Option<String>,
}

async fn page(State(site): State<Arc<Site>>, uri: Uri, headers: HeaderMap) -> Response {
    let access = site.access(&headers);
    let notice = Query::<NoticeQuery>::try_from_uri(&uri).ok().and_then(|q| q.0.notice);
    match site.view(&uri, access == Access::SignedIn).await {
        Some(view) => html(StatusCode::OK, site.layout(&view, access, notice.as_deref())),
        None => {
            let view = View::new(
                Section::Overview,
                "Not found",
                format!(
                    "<h1>Not found</h1><p>Nothing here is called <code>{}</code>. See <a href=\"/tasks\">the tasks</a>.</p>",
                    escape(uri.path())
                ),
            );
            html(StatusCode::NOT_FOUND, site.layout(&view, access, None))
        }
    }
}

#[derive(Deserialize)]
struct LiveQuery {
    path: String,
}

/// Server-sent events for the page at `path`: its live part, each time it
/// changes (checked every [`LIVE_EVERY`]).
async fn live(State(site): State<Arc<Site>>, Query(query): Query<LiveQuery>, headers: HeaderMap) -> Response {
    let Some(uri) = local_path(&query.path).and_then(|p| p.parse::<Uri>().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            "path must be one of this page's own addresses, such as /tasks\n",
        )
            .into_response();
    };
    let can_act = site.access(&headers) == Access::SignedIn;
    let (tx, rx) = mpsc::channel::<Result<Event, std::convert::Infallible>>(2);
    tokio::spawn(async move {
        let mut last = String::new();
        loop {
            let Some(view) = site.view(&uri, can_act).await else {
                return;
            };
            if view.live != last {
                if tx.send(Ok(Event::default().data(&view.live))).await.is_err() {
                    return;
                }
                last = view.live;
            }
            tokio::select! {
                _ = tokio::time::sleep(LIVE_EVERY) => {}
                _ = tx.closed() => return,
            }
        }
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}

async fn login_form(State(site): State<Arc<Site>>, headers: HeaderMap) -> Response {
    let access = site.access(&headers);
    html(StatusCode::OK, sign_in_page(&site, access, None))
}

fn sign_in_page(site: &Site, access: Access, notice: Option<&str>) -> String {
    let live = match access {
        Access::ReadOnly => "<h1>Read-only</h1><p>This node has no admin token, so its page takes no manual steps. \
             Set <code>[metrics] admin_token_file</code> in its config to allow them (see \
             <code>docs/status-page.md</code>), or use <code>batonctl</code>.</p>"
            .to_string(),
        _ => "<h1>Sign in</h1><p>Manual steps (pause or resume a task, drain a node, pause, resume or abort a \
             rollout) need the node's admin token, from the file its <code>[metrics] admin_token_file</code> names.</p>\
             <form method=\"post\" action=\"/login\"><input type=\"password\" name=\"token\" size=\"40\" \
             autocomplete=\"current-password\" autofocus> <button>Sign in</button></form>"
            .to_string(),
    };
    let view = View::new(Section::SignIn, "Sign in", live);
    site.layout(&view, access, notice)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(site): State<Arc<Site>>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let Some(token) = &site.token else {
        return html(StatusCode::FORBIDDEN, sign_in_page(&site, Access::ReadOnly, None));
    };
    if !token.admits(super::admin_token::Presented::Bearer(&form.token)) {
        // A wrong guess costs its sender a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let notice = "refused: that is not this node's admin token";
        return html(
            StatusCode::UNAUTHORIZED,
            sign_in_page(&site, site.access(&headers), Some(notice)),
        );
    }
    let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", token.cookie_value());
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/?notice=Signed%20in.".to_string()),
        ],
    )
        .into_response()
}

async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        StatusCode::SEE_OTHER,
        [(header::SET_COOKIE, cookie), (header::LOCATION, "/".to_string())],
    )
        .into_response()
}

/// A manual step, as the page's buttons post it.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Step {
    step: String,
    back: String,
    task: String,
    node: String,
    module: String,
}

async fn act(State(site): State<Arc<Site>>, headers: HeaderMap, Form(step): Form<Step>) -> Response {
    let header = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let back = local_path(&step.back).unwrap_or("/").to_string();
    match site.access(&headers) {
        Access::SignedIn => {}
        access => {
            let why = match access {
                Access::ReadOnly => "refused: this node's page is read-only (no [metrics] admin_token_file)",
                _ => "refused: sign in first (the node's admin token)",
            };
            return html(StatusCode::FORBIDDEN, sign_in_page(&site, access, Some(why)));
        }
    }
    if !same_origin(header(header::ORIGIN), header(header::HOST)) {
        return (
            StatusCode::FORBIDDEN,
            "refused: the step was sent from another site's page\n",
        )
            .into_response();
    }
    let notice = match take(&site.control, &step).await {
        Ok(done) => done,
        Err(why) => format!("refused: {why}"),
    };
    tracing::info!(step = %step.step, task = %step.task, node = %step.node, module = %step.module, "status page: {notice}");
    (StatusCode::SEE_OTHER, [(header::LOCATION, with_notice(&back, &notice))]).into_response()
}

/// Takes `step` through the Control calls `batonctl` makes; what was done,
/// or why not.
async fn take(control: &ControlService, step: &Step) -> Result<String, String> {
    let why = |status: tonic::Status| status.message().to_string();
    let node = || -> Result<u64, String> {
        step.node
            .parse()
            .map_err(|_| format!("{:?} is not a node id", step.node))
    };
    let rollout = |action: RolloutAction| ControlRolloutRequest {
        module: step.module.clone(),
        action: action as i32,
    };
    let upgrade = |action: &str| ControlUpgradeRequest { action: action.into() };
    let task = || {
        Request::new(TaskRequest {
            name: step.task.clone(),
        })
    };
    match step.step.as_str() {
        "pause-task" => control.pause_task(task()).await.map(|_| ()).map_err(why)?,
        "resume-task" => control.resume_task(task()).await.map(|_| ()).map_err(why)?,
        "drain" | "undrain" => {
            let drain = step.step == "drain";
            let id = node()?;
            let reply = control
                .drain_node(Request::new(DrainNodeRequest { id, drain }))
                .await
                .map_err(why)?
                .into_inner();
            return Ok(match drain {
                true => format!("Drained node {id}: {} tasks move off it.", reply.tasks_to_move),
                false => format!("Undrained node {id}: it takes tasks again."),
            });
        }
        "pause-rollout" => control
            .control_rollout(Request::new(rollout(RolloutAction::Pause)))
            .await
            .map(|_| ())
            .map_err(why)?,
        "resume-rollout" => control
            .control_rollout(Request::new(rollout(RolloutAction::Resume)))
            .await
            .map(|_| ())
            .map_err(why)?,
        "abort-rollout" => control
            .control_rollout(Request::new(rollout(RolloutAction::Abort)))
            .await
            .map(|_| ())
            .map_err(why)?,
        "pause-upgrade" | "resume-upgrade" | "abort-upgrade" => {
            let action = step.step.trim_end_matches("-upgrade");
            control
                .control_upgrade(Request::new(upgrade(action)))
                .await
                .map_err(why)?;
            return Ok(format!("The node upgrade: {action} done."));
        }
        other => return Err(format!("{other:?} is not a step this page takes")),
    }
    let what = match step.step.as_str() {
        "pause-task" => format!("Paused task {}.", step.task),
        "resume-task" => format!("Resumed task {}.", step.task),
        "pause-rollout" => format!("Paused the rollout of {}.", step.module),
        "resume-rollout" => format!("Resumed the rollout of {}.", step.module),
        _ => format!(
            "Aborted the rollout of {}: its nodes go back to the old version.",
            step.module
        ),
    };
    Ok(what)
}

/// `path` if it is an address on this site (so a step cannot send its
/// reader elsewhere): it starts with one `/`.
fn local_path(path: &str) -> Option<&str> {
    let local = path.starts_with('/') && !path.starts_with("//") && !path.contains(['\\', '\r', '\n']);
    local.then_some(path)
}

/// `uri`'s path and query without a `notice` parameter.
fn without_notice(uri: &Uri) -> String {
    let kept: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("notice="))
        .collect();
    match kept.is_empty() {
        true => uri.path().to_string(),
        false => format!("{}?{}", uri.path(), kept.join("&")),
    }
}

/// `back` with `notice` added to its query.
fn with_notice(back: &str, notice: &str) -> String {
    let encoded = super::task_rows::percent_encode(notice);
    let join = if back.contains('?') { '&' } else { '?' };
    format!("{back}{join}notice={encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_come_back_only_to_this_site() {
        assert_eq!(local_path("/tasks?x=1"), Some("/tasks?x=1"));
        for elsewhere in ["//evil.example/", "http://evil.example/", "", "/\\evil", "tasks"] {
            assert_eq!(local_path(elsewhere), None, "{elsewhere}");
        }
    }

    #[test]
    fn a_notice_replaces_the_last_one() {
        let uri: Uri = "/tasks?module=counter&notice=Paused%20x.&page=2".parse().unwrap();
        let back = without_notice(&uri);
        assert_eq!(back, "/tasks?module=counter&page=2");
        assert_eq!(
            with_notice(&back, "Paused y."),
            "/tasks?module=counter&page=2&notice=Paused%20y."
        );
        assert_eq!(with_notice("/", "ok"), "/?notice=ok");
        assert_eq!(without_notice(&"/?notice=x".parse().unwrap()), "/");
    }
}
