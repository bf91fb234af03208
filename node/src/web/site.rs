//! The status page's shell: it reads what a page shows through the same
//! Control calls `batonctl` makes (in-process, so the page and the CLI
//! cannot disagree), renders it with [`super::pages`], streams changes as
//! server-sent events, and takes manual steps from a signed-in reader.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use baton_proto::control_server::Control;
use baton_proto::{
    ControlRolloutRequest, ControlUpgradeRequest, DrainNodeRequest, RolloutAction, StatusReply, TaskLogsRequest,
    TaskRequest,
};
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Request;

use super::admin_token::{AdminToken, Presented, cookie, from_this_page, presented};
use super::html::{Access, Layout, Section, escape};
use super::pages::{self, Context};
use super::task_rows::{TaskFilter, TaskRow, task_page};
use crate::api::{ControlService, NodeContext};
use crate::metrics::tls_listener::Client;
use crate::state::history::TickRecord;

/// How often a live page is rendered again (and sent when it changed).
const LIVE_EVERY: Duration = Duration::from_secs(1);
/// Live pages one node follows at once; more are refused until one closes
/// (each costs a render a second).
const MAX_LIVE_PAGES: usize = 64;
/// How long the cluster's status, which probes every member, is shared
/// between the pages that render it.
const STATUS_FRESH: Duration = Duration::from_millis(900);
/// The header a script sends with the admin certificate to take a step
/// (see [`act`]).
pub const SCRIPT_HEADER: &str = "x-baton-step";
/// What a wrong token costs its sender: failed sign-ins and steps wait in
/// one line, one a second.
const FAILED_AUTH_COST: Duration = Duration::from_secs(1);

struct Site {
    context: Arc<NodeContext>,
    control: ControlService,
    token: Option<AdminToken>,
    /// The listener serves TLS and takes the admin certificate as a
    /// credential.
    certificates: bool,
    /// Seals the notices shown after a step: the token, or on a node
    /// without one a random key.
    notices: AdminToken,
    /// The cookies' names: browsers share cookies between the ports of a
    /// host, so they are named for this listener's.
    session_cookie: String,
    notice_cookie: String,
    status: Mutex<Option<(Instant, Arc<StatusReply>)>>,
    live_pages: Arc<Semaphore>,
    failed_auth: tokio::sync::Mutex<()>,
}

/// The status page's routes, to merge into the node's plain-HTTP listener
/// on `port` (served with `ConnectInfo<Client>`); over TLS with
/// `certificates`, where the admin certificate unlocks the steps as the
/// token does.
pub fn router(context: Arc<NodeContext>, token: Option<AdminToken>, certificates: bool, port: u16) -> Router {
    let site = Arc::new(Site {
        control: ControlService::new(context.clone()),
        context,
        notices: token.clone().unwrap_or_else(AdminToken::random),
        token,
        certificates,
        session_cookie: format!("baton_admin_{port}"),
        notice_cookie: format!("baton_notice_{port}"),
        status: Mutex::new(None),
        live_pages: Arc::new(Semaphore::new(MAX_LIVE_PAGES)),
        failed_auth: tokio::sync::Mutex::new(()),
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
    fn access(&self, headers: &HeaderMap, client: &Client) -> Access {
        let token = self
            .token
            .as_ref()
            .map(|token| token.admits(self.presented(headers), crate::types::now_ms()));
        Access::of(token, self.certificates, client.admin_certificate)
    }

    fn presented<'a>(&self, headers: &'a HeaderMap) -> Presented<'a> {
        presented(
            header_str(headers, header::AUTHORIZATION),
            header_str(headers, header::COOKIE),
            &self.session_cookie,
        )
    }

    fn leads(&self) -> bool {
        crate::types::leader(&self.context.raft).0 == Some(self.context.id)
    }

    /// The cluster's status, shared for [`STATUS_FRESH`] between pages.
    async fn status(&self) -> Arc<StatusReply> {
        if let Some((at, status)) = self.status.lock().expect("status cache").as_ref()
            && at.elapsed() < STATUS_FRESH
        {
            return status.clone();
        }
        let status = Arc::new(self.control.status_here().await);
        *self.status.lock().expect("status cache") = Some((Instant::now(), status.clone()));
        status
    }

    /// The page at `uri`: its section, title, the part above its live part,
    /// and the live part; `None` for an address that is no page. Steps are
    /// offered to a signed-in reader of the leader's page, which takes them.
    async fn view(&self, uri: &Uri, access: Access) -> Option<View> {
        let signed_in = access.may_act();
        let back = uri.path_and_query().map_or(uri.path(), |p| p.as_str()).to_string();
        let version = self.context.state_machine.read(|s| s.cluster_version);
        let cx = Context {
            now_ms: crate::types::now_ms(),
            can_act: signed_in && self.leads(),
            run_now: version >= crate::state::cluster_version::RUN_NOW,
            back: &back,
        };
        let path = uri.path();
        let mut view = match path {
            "/" => {
                let status = self.status().await;
                let (rollouts, upgrade) = (self.control.rollouts_here(), self.control.upgrade_here());
                View::new(
                    Section::Overview,
                    "Overview",
                    pages::overview(&status, &rollouts, &upgrade, cx),
                )
            }
            "/nodes" => {
                let status = self.status().await;
                View::new(Section::Nodes, "Nodes", pages::nodes(&status, cx))
            }
            "/modules" => {
                let modules = self
                    .control
                    .list_modules(Request::new(Default::default()))
                    .await
                    .map(|r| r.into_inner())
                    .unwrap_or_default();
                let (rollouts, upgrade) = (self.control.rollouts_here(), self.control.upgrade_here());
                View::new(
                    Section::Modules,
                    "Modules",
                    pages::modules(&modules, &rollouts, &upgrade, cx),
                )
            }
            "/tasks" => {
                let pairs = Query::<Vec<(String, String)>>::try_from_uri(uri)
                    .map(|q| q.0)
                    .unwrap_or_default();
                let filter = TaskFilter::from_pairs(&pairs);
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
                // What a module logs may be private: shown to the signed in.
                let logs = match signed_in {
                    false => None,
                    true => Some(
                        self.control
                            .task_logs(Request::new(TaskLogsRequest {
                                name: name.to_string(),
                                limit: pages::LOG_LINES_SHOWN,
                                ..TaskLogsRequest::default()
                            }))
                            .await
                            .map(|r| r.into_inner()),
                    ),
                };
                let lines = match &logs {
                    None if access == Access::ReadOnly => pages::TaskLines::ReadOnly,
                    None => pages::TaskLines::SignInFirst,
                    Some(Ok(reply)) => pages::TaskLines::Read(reply),
                    Some(Err(_)) => pages::TaskLines::Unread,
                };
                let html = pages::task(&info, &row, &history, lines, cx);
                View::new(Section::Tasks, &format!("Task {name}"), html)
            }
        };
        if signed_in && !cx.can_act {
            let leader = match crate::types::leader(&self.context.raft).0 {
                Some(id) => format!("node {id}"),
                None => "the leader, once there is one".to_string(),
            };
            view.live = format!(
                "<p class=\"muted\" id=\"steps-elsewhere\">Manual steps are taken on the leader's page: {leader}.</p>{}",
                view.live
            );
        }
        Some(view)
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

    /// A sign-in or step refused for its token: logged with who sent it,
    /// and answered only after [`FAILED_AUTH_COST`], one at a time.
    async fn refuse_slowly(&self, client: Client, what: &str) {
        tracing::warn!(%client, "status page: refused {what}: no valid admin token");
        let _one_at_a_time = self.failed_auth.lock().await;
        tokio::time::sleep(FAILED_AUTH_COST).await;
    }

    /// What every cookie of the page says of itself: over TLS also
    /// `Secure`, so that a browser never sends it to a plain-HTTP port of
    /// the same host, where anyone on the path could read it.
    fn cookie_attributes(&self) -> &'static str {
        match self.certificates {
            true => "Path=/; HttpOnly; SameSite=Strict; Secure",
            false => "Path=/; HttpOnly; SameSite=Strict",
        }
    }

    /// A cookie that shows `notice` on the next page.
    fn notice_cookie(&self, notice: &str) -> String {
        let sealed = self.notices.seal(notice);
        format!(
            "{}={sealed}; {}; Max-Age=60",
            self.notice_cookie,
            self.cookie_attributes()
        )
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

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An HTML answer, not to be cached or framed by another page.
fn html(status: StatusCode, body: String, cookies: &[String]) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    set_cookies(headers, cookies);
    response
}

fn set_cookies(headers: &mut HeaderMap, cookies: &[String]) {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, value);
        }
    }
}

/// A redirect to `to` after a POST, setting `cookies`, its body `text` (for
/// scripts, which do not follow it).
fn see_other(to: &str, cookies: &[String], text: &str) -> Response {
    let mut response = (StatusCode::SEE_OTHER, format!("{text}\n")).into_response();
    let headers = response.headers_mut();
    if let Ok(to) = HeaderValue::from_str(to) {
        headers.insert(header::LOCATION, to);
    }
    set_cookies(headers, cookies);
    response
}

async fn page(
    State(site): State<Arc<Site>>,
    ConnectInfo(client): ConnectInfo<Client>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let access = site.access(&headers, &client);
    let sealed = cookie(header_str(&headers, header::COOKIE), &site.notice_cookie);
    let notice = sealed.and_then(|sealed| site.notices.open(sealed));
    // A notice is shown once.
    let cleared: Vec<String> = sealed
        .map(|_| format!("{}=; {}; Max-Age=0", site.notice_cookie, site.cookie_attributes()))
        .into_iter()
        .collect();
    match site.view(&uri, access).await {
        Some(view) => html(StatusCode::OK, site.layout(&view, access, notice.as_deref()), &cleared),
        None => {
            let view = View::new(
                Section::Overview,
                "Not found",
                format!(
                    "<h1>Not found</h1><p>Nothing here is called <code>{}</code>. See <a href=\"/tasks\">the tasks</a>.</p>",
                    escape(uri.path())
                ),
            );
            html(StatusCode::NOT_FOUND, site.layout(&view, access, None), &cleared)
        }
    }
}

#[derive(Deserialize)]
struct LiveQuery {
    path: String,
}

/// Server-sent events for the page at `path`: its live part, each time it
/// changes (checked every [`LIVE_EVERY`]), while the reader stays.
async fn live(
    State(site): State<Arc<Site>>,
    ConnectInfo(client): ConnectInfo<Client>,
    Query(query): Query<LiveQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(uri) = local_path(&query.path).and_then(|p| p.parse::<Uri>().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            "path must be one of this page's own addresses, such as /tasks\n",
        )
            .into_response();
    };
    let Ok(permit) = site.live_pages.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this node already follows {MAX_LIVE_PAGES} live pages; reload later, or close some\n"),
        )
            .into_response();
    };
    let (tx, rx) = mpsc::channel::<Result<Event, std::convert::Infallible>>(2);
    tokio::spawn(async move {
        let _permit = permit;
        let mut last = String::new();
        loop {
            // Asked again each time: a session that ends meanwhile ends
            // what only the signed-in see (steps, a module's lines).
            let access = site.access(&headers, &client);
            let Some(view) = site.view(&uri, access).await else {
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

async fn login_form(
    State(site): State<Arc<Site>>,
    ConnectInfo(client): ConnectInfo<Client>,
    headers: HeaderMap,
) -> Response {
    let access = site.access(&headers, &client);
    html(StatusCode::OK, sign_in_page(&site, access, None), &[])
}

fn sign_in_page(site: &Site, access: Access, notice: Option<&str>) -> String {
    const STEPS: &str = "Manual steps (run a task now, pause or resume it, drain a node, pause, resume or abort a \
         rollout)";
    let certificate = "show the admin certificate (<code>admin.pem</code> and its key, from <code>batonctl certs \
         init</code>) to your browser: this listener serves TLS and takes it";
    let live = match (access, &site.token, site.certificates) {
        (Access::ReadOnly, _, _) => "<h1>Read-only</h1><p>This node has no admin token, so its page takes no manual \
             steps. Set <code>[metrics] admin_token_file</code> in its config to allow them (see \
             <code>docs/status-page.md</code>), or use <code>batonctl</code>.</p>"
            .to_string(),
        (Access::Certificate, _, _) => {
            format!("<h1>Signed in</h1><p>Your browser showed the admin certificate. {STEPS} are yours.</p>")
        }
        (_, None, _) => format!("<h1>Sign in</h1><p>{STEPS}: {certificate}.</p>"),
        (_, Some(_), certificates) => {
            let or_certificate = match certificates {
                true => format!(" Or {certificate}."),
                false => String::new(),
            };
            format!(
                "<h1>Sign in</h1><p>{STEPS} need the node's admin token, from the file its <code>[metrics] \
                 admin_token_file</code> names.{or_certificate}</p>\
                 <form method=\"post\" action=\"/login\"><input type=\"password\" name=\"token\" size=\"40\" \
                 autocomplete=\"current-password\" autofocus> <button>Sign in</button></form>"
            )
        }
    };
    let view = View::new(Section::SignIn, "Sign in", live);
    site.layout(&view, access, notice)
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(
    State(site): State<Arc<Site>>,
    ConnectInfo(client): ConnectInfo<Client>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let Some(token) = &site.token else {
        let access = site.access(&headers, &client);
        let why = "refused: this node has no admin token to sign in with";
        return html(StatusCode::FORBIDDEN, sign_in_page(&site, access, Some(why)), &[]);
    };
    if !token.is(&form.token) {
        site.refuse_slowly(client, "a sign-in").await;
        let notice = "refused: that is not this node's admin token";
        return html(
            StatusCode::UNAUTHORIZED,
            sign_in_page(&site, site.access(&headers, &client), Some(notice)),
            &[],
        );
    }
    tracing::info!(%client, "status page: signed in");
    let session = format!(
        "{}={}; {}; Max-Age={}",
        site.session_cookie,
        token.session(crate::types::now_ms()),
        site.cookie_attributes(),
        super::admin_token::SESSION_MS / 1000
    );
    let cookies = [session, site.notice_cookie("Signed in.")];
    see_other("/", &cookies, "Signed in.")
}

async fn logout(State(site): State<Arc<Site>>) -> Response {
    let cleared = format!("{}=; {}; Max-Age=0", site.session_cookie, site.cookie_attributes());
    see_other("/", &[cleared], "Signed out.")
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

async fn act(
    State(site): State<Arc<Site>>,
    ConnectInfo(client): ConnectInfo<Client>,
    headers: HeaderMap,
    Form(step): Form<Step>,
) -> Response {
    let back = local_path(&step.back).unwrap_or("/").to_string();
    match site.access(&headers, &client) {
        Access::SignedIn | Access::Certificate => {}
        Access::ReadOnly => {
            let why = "refused: this node's page is read-only (no [metrics] admin_token_file)";
            return html(
                StatusCode::FORBIDDEN,
                sign_in_page(&site, Access::ReadOnly, Some(why)),
                &[],
            );
        }
        Access::SignedOut => {
            site.refuse_slowly(client, &format!("the step {:?}", step.step)).await;
            let why = match (&site.token, site.certificates) {
                (Some(_), false) => "refused: sign in first (the node's admin token)",
                (Some(_), true) => "refused: sign in first (the node's admin token), or show the admin certificate",
                (None, _) => "refused: show the admin certificate (this node has no admin token)",
            };
            return html(
                StatusCode::FORBIDDEN,
                sign_in_page(&site, Access::SignedOut, Some(why)),
                &[],
            );
        }
    }
    // A browser shows a client certificate by itself, as it sends a
    // cookie: a request that says nothing of where it comes from is taken
    // as a script's only with a credential a browser never adds by itself,
    // the bearer token, or the header scripts send beside the certificate
    // (a page elsewhere cannot add it without asking first, and this node
    // answers no such question).
    let script = matches!(site.presented(&headers), Presented::Bearer(_))
        || (client.admin_certificate && headers.contains_key(SCRIPT_HEADER));
    let from_page = from_this_page(
        header_str(&headers, header::ORIGIN),
        headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()),
        header_str(&headers, header::HOST),
        script,
    );
    if !from_page {
        tracing::warn!(%client, step = %step.step, "status page: refused a step sent from another site's page");
        return (
            StatusCode::FORBIDDEN,
            "refused: the step was not sent from this node's page (its Origin names another site, or it has none); \
             scripts send the token as Authorization: Bearer, or with the admin certificate the header \
             X-Baton-Step: 1\n",
        )
            .into_response();
    }
    let notice = match take(&site.control, &step).await {
        Ok(done) => done,
        Err(why) => format!("refused: {why}"),
    };
    // The page the reader comes back to shows the step's effect.
    *site.status.lock().expect("status cache") = None;
    tracing::info!(%client, step = %step.step, task = %step.task, node = %step.node, module = %step.module,
        "status page: {notice}");
    let cookies = [site.notice_cookie(&notice)];
    see_other(&back, &cookies, &notice)
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
    let rollout = |action: RolloutAction| {
        Request::new(ControlRolloutRequest {
            module: step.module.clone(),
            action: action as i32,
        })
    };
    let upgrade = |action: &str| Request::new(ControlUpgradeRequest { action: action.into() });
    let task = || {
        Request::new(TaskRequest {
            name: step.task.clone(),
        })
    };
    let module = &step.module;
    Ok(match step.step.as_str() {
        "pause-task" => {
            control.pause_task(task()).await.map_err(why)?;
            format!("Paused task {}.", step.task)
        }
        "resume-task" => {
            control.resume_task(task()).await.map_err(why)?;
            format!("Resumed task {}.", step.task)
        }
        "run-now" => {
            control.run_task_now(task()).await.map_err(why)?;
            format!("Asked task {} for a tick now.", step.task)
        }
        "drain" | "undrain" => {
            let drain = step.step == "drain";
            let id = node()?;
            let request = Request::new(DrainNodeRequest { id, drain });
            let reply = control.drain_node(request).await.map_err(why)?.into_inner();
            match drain {
                true => format!("Drained node {id}: {} tasks move off it.", reply.tasks_to_move),
                false => format!("Undrained node {id}: it takes tasks again."),
            }
        }
        "pause-rollout" | "resume-rollout" | "abort-rollout" => {
            let (action, done) = match step.step.as_str() {
                "pause-rollout" => (RolloutAction::Pause, format!("Paused the rollout of {module}.")),
                "resume-rollout" => (RolloutAction::Resume, format!("Resumed the rollout of {module}.")),
                _ => (
                    RolloutAction::Abort,
                    format!("Aborted the rollout of {module}: its nodes go back to the old version."),
                ),
            };
            control.control_rollout(rollout(action)).await.map_err(why)?;
            done
        }
        "pause-upgrade" | "resume-upgrade" | "abort-upgrade" => {
            let action = step.step.trim_end_matches("-upgrade");
            control.control_upgrade(upgrade(action)).await.map_err(why)?;
            format!("The node upgrade: {action} done.")
        }
        other => return Err(format!("{other:?} is not a step this page takes")),
    })
}

/// `path` if it is an address on this site (so a step cannot send its
/// reader elsewhere): it starts with one `/` and holds only visible ASCII.
fn local_path(path: &str) -> Option<&str> {
    let visible = path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\');
    (visible && path.starts_with('/') && !path.starts_with("//")).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_come_back_only_to_this_site() {
        assert_eq!(local_path("/tasks?x=1"), Some("/tasks?x=1"));
        for elsewhere in [
            "//evil.example/",
            "http://evil.example/",
            "",
            "/\\evil",
            "tasks",
            "/\t/evil.example",
            "/ /evil",
            "/é",
        ] {
            assert_eq!(local_path(elsewhere), None, "{elsewhere:?}");
        }
    }

    #[test]
    fn answers_forbid_framing_and_caching() {
        let answer = html(StatusCode::OK, String::new(), &["a=b".into(), "c=d".into()]);
        assert_eq!(answer.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            answer.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(answer.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(answer.headers().get_all(header::SET_COOKIE).iter().count(), 2);
    }
}
