//! [`DatabaseEngine`]: a [`Database`] driver and a [`Strategy`], as a rotation engine.

use std::sync::Arc;
use std::time::Duration;

use secret_rotor::{Code, Context, Engine, Error, ErrorKind, Report, SecretJson, SecretString};

use crate::rds::{self, RdsApi};
use crate::secret::DatabaseSecret;
use crate::strategy::{Strategy, UserPair};
use crate::Database;

/// A database driver rotated with one strategy: the engine of a deployed database function.
pub struct DatabaseEngine<D: Database> {
    db: D,
    strategy: Strategy,
    name: String,
    rds: Option<Arc<dyn RdsApi>>,
}

/// The master secret of an alternating-users rotation, ready to log in: on the server of the
/// rotated secret, checked.
struct Master {
    secret: DatabaseSecret,
    /// `RDS DB instance …` when RDS told where the master's database is.
    rds_server: Option<String>,
}

/// Alternating users' sessions for setSecret: the current user's and the master's, both on the
/// writer.
struct MasterSessions<S> {
    current: S,
    master: S,
    /// The writer's host and port, when it is not the rotated secret's own (an RDS reader or
    /// replica).
    writer: Option<(String, u16)>,
    /// `RDS DB instance …` when RDS told where the master's database is (for the preflight).
    rds_server: Option<String>,
}

/// How long testSecret waits at most for a password to reach a replica: Aurora replicates in
/// milliseconds and RDS read replicas usually in seconds; a refusal beyond this is an answer.
const REPLICATION_WAIT: Duration = Duration::from_secs(60);

impl<D: Database> DatabaseEngine<D> {
    /// The engine for `db` with `strategy`.
    pub fn new(db: D, strategy: Strategy) -> Self {
        let name = format!("{}/{}", db.name(), strategy);
        Self {
            db,
            strategy,
            name,
            rds: None,
        }
    }

    /// The engine, asking `rds` where an RDS-managed master secret's database is and which
    /// endpoints reach it (see [`crate::rds`]). Without it, a master secret must name its host,
    /// and the rotated secret must name the very same host and port.
    pub fn with_rds(mut self, rds: Arc<dyn RdsApi>) -> Self {
        self.rds = Some(rds);
        self
    }

    /// The engine for `db` with the strategy of `ROTATION_STRATEGY`.
    pub fn from_env(db: D) -> Result<Self, Error> {
        Ok(Self::new(db, Strategy::from_env()?))
    }

    /// The driver.
    pub fn database(&self) -> &D {
        &self.db
    }

    /// The strategy.
    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    /// The username the pending secret must have, given the current one.
    fn pending_username<'a>(&self, current: &'a DatabaseSecret, pair: &'a UserPair) -> &'a str {
        match self.strategy {
            Strategy::SingleUser => &current.username,
            Strategy::AlternatingUsers => pair.other(&current.username),
        }
    }

    /// The pending username, checked against the engine's rules when it is a new one (the
    /// alternate's name may be too long for the server).
    fn checked_pending_username<'a>(
        &self,
        current: &'a DatabaseSecret,
        pair: &'a UserPair,
    ) -> Result<&'a str, Error> {
        let username = self.pending_username(current, pair);
        if username != current.username {
            self.db.check_new_username(current, username)?;
        }
        Ok(username)
    }

    /// Single user: a session as the user with `AWSPREVIOUS`'s credentials, after current's
    /// were refused with `current_error` (which heals a database restored from a snapshot taken
    /// before the last rotation).
    async fn login_previous(
        &self,
        ctx: &Context<'_, Self>,
        current: &DatabaseSecret,
        current_error: Error,
    ) -> Result<D::Session, Error> {
        let previous = ctx
            .previous()
            .await?
            .filter(|previous| previous.username == current.username && previous.same_server(current));
        let previous_error = match previous {
            Some(previous) => match self.db.login(previous, ctx.deadline()).await {
                Ok(session) => {
                    tracing::warn!(
                        secret_arn = ctx.secret_id(),
                        "current credentials were refused, AWSPREVIOUS logged in: setting the password through it"
                    );
                    return Ok(session);
                }
                Err(e) => Some(e),
            },
            None => None,
        };
        let retryable = current_error.kind().is_retryable()
            || previous_error.as_ref().is_some_and(|e| e.kind().is_retryable());
        let mut message =
            format!("unable to log in with previous, current or pending secret (current: {current_error}");
        match &previous_error {
            Some(e) => message.push_str(&format!("; previous: {e})")),
            None => message.push_str("; no usable AWSPREVIOUS)"),
        }
        Err(Error::new(
            if retryable {
                ErrorKind::Transient
            } else {
                ErrorKind::Target
            },
            message,
        ))
    }

    /// Alternating users: a session as the current user, then one as the master named by
    /// current's `masterarn`, used only once the current credentials have proved the secret
    /// genuine.
    async fn login_master(
        &self,
        ctx: &Context<'_, Self>,
        current: &DatabaseSecret,
    ) -> Result<MasterSessions<D::Session>, Error> {
        let current_session = self
            .db
            .login(current, ctx.deadline())
            .await
            .map_err(|e| e.context("current secret does not log in, the master secret was not used"))?;
        let masterarn = current.masterarn()?;
        let Master {
            secret: master,
            rds_server,
        } = self.master(ctx, masterarn, current).await?;
        let pair = UserPair::of(&current.username);
        if master.username == pair.original || master.username == pair.clone_user {
            return Err(Error::invalid_secret(format!(
                "the master secret {masterarn} is for user {}, one of the two users this secret \
                 alternates ({} and {}): refusing to rotate the master into itself",
                master.username, pair.original, pair.clone_user
            )));
        }
        self.db
            .validate(&master)
            .map_err(|e| e.context("master secret"))?;
        let master_session = self
            .db
            .login(&master, ctx.deadline())
            .await
            .map_err(|e| e.context("master secret"))?;
        // Passwords are set on the writer, and whatever the current user hands over first too:
        // a rotated secret on a reader or a replica logs in there again as itself.
        if master.same_server(current) {
            return Ok(MasterSessions {
                current: current_session,
                master: master_session,
                writer: None,
                rds_server,
            });
        }
        let current_session = {
            drop(current_session);
            let writer = current.on_server(&master.host, master.port);
            self.db.login(&writer, ctx.deadline()).await.map_err(|e| {
                e.context(format!(
                    "the current user on the writer of {} ({}:{})",
                    rds_server.as_deref().unwrap_or("the master's server"),
                    master.host,
                    master.port
                ))
            })?
        };
        Ok(MasterSessions {
            current: current_session,
            master: master_session,
            writer: Some((master.host.clone(), master.port)),
            rds_server,
        })
    }

    /// The master secret `masterarn`, on the server of `current`. An RDS-managed master (no
    /// `host`, and RDS's system tag) gets its writer's endpoint from RDS. The rotated secret must
    /// reach the master's database: the same host and port, or, asked of RDS, another endpoint
    /// of the same instance or cluster.
    async fn master(
        &self,
        ctx: &Context<'_, Self>,
        masterarn: &str,
        current: &DatabaseSecret,
    ) -> Result<Master, Error> {
        let raw = ctx.read_secret(masterarn).await?;
        let mut doc = SecretJson::parse(&raw).map_err(|e| e.context("master secret"))?;
        let has_host = doc
            .optional_str("host")
            .map_err(|e| e.context("master secret"))?
            .is_some();
        if has_host {
            let master = DatabaseSecret::master_from_doc(doc, self.db.default_port())?;
            self.check_same_server(ctx, masterarn, &master, current, None)
                .await?;
            return Ok(Master {
                secret: master,
                rds_server: None,
            });
        }
        let no_host = |why: &str| {
            Error::invalid_secret(format!(
                "master secret {masterarn}: missing required key `host`, {why}"
            ))
        };
        let api = self
            .rds
            .as_deref()
            .ok_or_else(|| no_host("and this function does not ask RDS where a master's database is"))?;
        let description = ctx
            .describe_secret(masterarn)
            .await
            .map_err(|e| e.context("master secret"))?;
        let server = ctx
            .deadline()
            .run(
                "asking RDS for the master's database",
                rds::managed_master(api, &description),
            )
            .await
            .map_err(|e| e.context(format!("master secret {masterarn}")))?
            .ok_or_else(|| {
                no_host(&format!(
                    "and it is not a master secret managed by RDS (no tag {} or {})",
                    rds::INSTANCE_TAG,
                    rds::CLUSTER_TAG
                ))
            })?;
        let family = rds::engine_family(server.engine());
        if !self.db.engines().contains(&family) {
            return Err(Error::invalid_secret(format!(
                "master secret {masterarn} is for {}, whose engine is {}; this function rotates {}",
                server.describe(),
                server.engine(),
                self.db.engines().join(", ")
            )));
        }
        let (host, port) = server.writer().ok_or_else(|| {
            Error::transient(format!(
                "master secret {masterarn} is for {}, which has no endpoint yet",
                server.describe()
            ))
        })?;
        doc.set_str("host", host);
        doc.insert("port", port.into());
        let master = DatabaseSecret::master_from_doc(doc, port)?;
        let described = server.describe();
        self.check_same_server(ctx, masterarn, &master, current, Some(&server))
            .await?;
        tracing::info!(
            secret_arn = ctx.secret_id(),
            master_arn = masterarn,
            "the RDS-managed master secret is for {described}, writer {}:{}",
            master.host,
            master.port
        );
        Ok(Master {
            secret: master,
            rds_server: Some(described),
        })
    }

    /// Refuses a master on another server than `current`'s. Two different hosts are one server
    /// only when RDS says so; the message names both servers.
    async fn check_same_server(
        &self,
        ctx: &Context<'_, Self>,
        masterarn: &str,
        master: &DatabaseSecret,
        current: &DatabaseSecret,
        server: Option<&rds::RdsServer>,
    ) -> Result<(), Error> {
        if master.same_server(current) {
            return Ok(());
        }
        let mut master_is = format!("{}:{}", master.host, master.port);
        if let Some(api) = self.rds.as_deref().filter(|_| rds::is_rds_host(&current.host)) {
            let asking = "asking RDS whether the two hosts are one database";
            let asked = match server {
                Some(server) => Some(server.clone()),
                None => {
                    let server_at = rds::server_at(api, &master.host, master.port);
                    ctx.deadline().run(asking, server_at).await?
                }
            };
            if let Some(server) = asked {
                let reaches = rds::reaches(api, &server, &current.host, current.port);
                if ctx.deadline().run(asking, reaches).await? {
                    return Ok(());
                }
                master_is = format!("{master_is} ({})", server.describe());
            }
        }
        Err(Error::invalid_secret(format!(
            "the master secret {masterarn} is for {master_is}, the rotated secret for {}:{}, \
             which is not an endpoint of the same database",
            current.host, current.port
        )))
    }

    /// testSecret's login when the pending credentials were refused: with alternating users on an
    /// RDS reader or read replica, the password set on the writer may not have arrived yet, so a
    /// refusal of the credentials (and only that) is tried again until the login works,
    /// [`REPLICATION_WAIT`] has passed or the invocation's time is nearly out. Single user set
    /// the password where the secret points: nothing to wait for, and no RDS call.
    async fn login_after_replication(
        &self,
        ctx: &Context<'_, Self>,
        pending: &DatabaseSecret,
        refused: Error,
    ) -> Result<D::Session, Error> {
        let waits = self.strategy == Strategy::AlternatingUsers
            && refused.code() == Some(Code::CredentialsRefused)
            && rds::is_rds_host(&pending.host);
        let Some(api) = self.rds.as_deref().filter(|_| waits) else {
            return Err(refused);
        };
        let is_replica = rds::is_replica(api, &pending.host, pending.port);
        match ctx
            .deadline()
            .run("asking RDS whether the host is a replica", is_replica)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(refused),
            Err(e) => {
                return Err(refused.context(format!(
                    "(whether {} is a replica could not be asked of RDS: {e})",
                    pending.host
                )))
            }
        }
        tracing::info!(
            secret_arn = ctx.secret_id(),
            host = pending.host.as_str(),
            "pending credentials refused on a replica: waiting for the password to replicate"
        );
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(200);
        let mut last = refused;
        // Keep time for the last login and the step's answer.
        while ctx.deadline().remaining() > pause + Duration::from_secs(2)
            && started.elapsed() + pause < REPLICATION_WAIT
        {
            tokio::time::sleep(pause).await;
            match self.db.login(pending, ctx.deadline()).await {
                Ok(session) => {
                    tracing::info!(
                        secret_arn = ctx.secret_id(),
                        waited_ms = started.elapsed().as_millis() as u64,
                        "pending credentials replicated"
                    );
                    return Ok(session);
                }
                Err(e) if e.code() == Some(Code::CredentialsRefused) => last = e,
                Err(e) => return Err(e),
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        Err(last.context(format!(
            "waited {} s for the password to replicate to {}",
            started.elapsed().as_secs(),
            pending.host
        )))
    }
}

impl<D: Database> Engine for DatabaseEngine<D> {
    type Secret = DatabaseSecret;

    fn name(&self) -> &str {
        &self.name
    }

    fn default_excluded_characters(&self) -> &str {
        self.db.default_excluded_characters()
    }

    fn parse(&self, value: &SecretString) -> Result<DatabaseSecret, Error> {
        let secret = DatabaseSecret::parse(value, self.db.engines(), self.db.default_port())?;
        self.db.validate(&secret)?;
        if self.strategy == Strategy::AlternatingUsers {
            secret.masterarn()?;
        }
        Ok(secret)
    }

    fn render(&self, secret: &DatabaseSecret) -> Result<SecretString, Error> {
        Ok(secret.render())
    }

    async fn create_pending(&self, ctx: &Context<'_, Self>) -> Result<DatabaseSecret, Error> {
        let current = ctx.current().await?;
        let pair = UserPair::of(&current.username);
        let username = self.checked_pending_username(current, &pair)?;
        Ok(current.with_credentials(username, ctx.new_password().await?))
    }

    /// No refused login on the normal path (servers log them, and teams alert on them): single
    /// user logs in with current first, which works on every first attempt, and tries pending
    /// only when current is refused (a retry after the password was set: nothing to change).
    /// Alternating users keep the contract's probe of the pending credentials first: only a
    /// login can tell whether the other user already has the pending password, since a
    /// least-privilege master can read neither PostgreSQL's `pg_authid` nor MySQL's `mysql.user`.
    async fn set_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        let pending = ctx.pending().await?;
        let current = ctx.current().await?;
        let pair = UserPair::of(&current.username);
        let expected = self.pending_username(current, &pair);
        // Before any login with the pending value: a pending secret naming another user or
        // server is never tried, let alone set.
        if pending.username != expected || !pending.same_server(current) {
            return Err(Error::invalid_secret(format!(
                "the pending secret is for user {} on {}:{}, expected user {expected} on {}:{}: refusing to change it",
                pending.username, pending.host, pending.port, current.host, current.port
            )));
        }
        let already = || {
            tracing::info!(
                secret_arn = ctx.secret_id(),
                "pending credentials already log in: nothing to set"
            );
            Ok(())
        };
        match self.strategy {
            Strategy::SingleUser => {
                if pending.password.expose() == current.password.expose() {
                    // A copy of current (a test-only rotation): nothing to change.
                    return Ok(());
                }
                let mut session = match self.db.login(current, ctx.deadline()).await {
                    Ok(session) => session,
                    // Out of time: the other logins (same server) could not finish either.
                    Err(timeout) if timeout.kind() == ErrorKind::Timeout => return Err(timeout),
                    Err(current_error) => {
                        if self.db.login(pending, ctx.deadline()).await.is_ok() {
                            return already();
                        }
                        self.login_previous(ctx, current, current_error).await?
                    }
                };
                self.db
                    .set_own_password(&mut session, pending, ctx.deadline())
                    .await
            }
            Strategy::AlternatingUsers => {
                if self.db.login(pending, ctx.deadline()).await.is_ok() {
                    return already();
                }
                let MasterSessions {
                    current: mut current_session,
                    mut master,
                    writer,
                    ..
                } = self.login_master(ctx, current).await?;
                // On a reader the probe above may have been refused only because a password
                // set by an earlier attempt has not replicated yet: ask the writer before
                // changing anything again.
                if let Some((host, port)) = writer {
                    let on_writer = pending.on_server(&host, port);
                    if self.db.login(&on_writer, ctx.deadline()).await.is_ok() {
                        return already();
                    }
                }
                self.db
                    .prepare_current(&mut current_session, &pair, current, ctx.deadline())
                    .await?;
                drop(current_session);
                self.db
                    .set_user_password(&mut master, &pair, pending, ctx.deadline())
                    .await
            }
        }
    }

    /// The rotation's own order: `AWSCURRENT` parsed, the next user name valid, then the logins
    /// setSecret makes — the user itself (single user), or the user and then the master, through
    /// the same guards (alternating users: the master is used only after the user logs in, only
    /// on the same server, never as one of the pair).
    async fn preflight(&self, ctx: &Context<'_, Self>, report: &mut Report) {
        let Some(current) = report.record("AWSCURRENT parses", ctx.current().await, |c| {
            format!("{}: user {} on {}:{}", self.name, c.username, c.host, c.port)
        }) else {
            return;
        };
        let pair = UserPair::of(&current.username);
        let next = self.checked_pending_username(current, &pair);
        report.record("the next user name", next, |next| (*next).to_owned());
        match self.strategy {
            Strategy::SingleUser => {
                let login = self.db.login(current, ctx.deadline()).await;
                report.record("AWSCURRENT logs in", login, |s| self.db.describe(s));
            }
            Strategy::AlternatingUsers => {
                let master = self.login_master(ctx, current).await;
                report.record(
                    "AWSCURRENT logs in, then the master (as setSecret does)",
                    master,
                    |sessions| {
                        let mut detail = format!("master: {}", self.db.describe(&sessions.master));
                        if let Some(server) = &sessions.rds_server {
                            detail.push_str(&format!("; the master's database, from RDS: {server}"));
                        }
                        if let Some((host, port)) = &sessions.writer {
                            detail.push_str(&format!("; passwords set on the writer {host}:{port}"));
                        }
                        detail
                    },
                );
            }
        }
    }

    async fn test_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        let pending = ctx.pending().await?;
        let mut session = match self.db.login(pending, ctx.deadline()).await {
            Ok(session) => Ok(session),
            Err(refused) if refused.kind() == ErrorKind::Target => {
                self.login_after_replication(ctx, pending, refused).await
            }
            Err(e) => Err(e),
        }
        .map_err(|e| e.context("unable to log in with pending secret"))?;
        self.db.check(&mut session, ctx.deadline()).await?;
        if self.strategy == Strategy::AlternatingUsers {
            let current = ctx.current().await?;
            let pair = UserPair::of(&current.username);
            self.db
                .compare_privileges(&mut session, &pair, pending, current, ctx.deadline())
                .await?;
        }
        Ok(())
    }
}

/// Both strategies on the fake driver and the in-memory store: no server, no network.
#[cfg(test)]
mod tests {
    use secret_rotor::testing::{new_token, MemoryStore, Service};
    use secret_rotor::{
        ErrorKind, Passwords, Rotor, SecretString, SecretsStore, Step, AWSCURRENT, AWSPREVIOUS,
    };
    use serde_json::{json, Value};

    use super::*;
    use crate::testing::MemoryDatabase;

    struct Case {
        db: MemoryDatabase,
        store: MemoryStore,
        arn: String,
        rotor: Rotor<DatabaseEngine<MemoryDatabase>>,
    }

    fn secret(user: &str, password: &str, extra: Value) -> SecretString {
        let mut value = json!({"engine": "memory", "host": "db", "username": user, "password": password});
        for (key, v) in extra.as_object().into_iter().flatten() {
            value[key] = v.clone();
        }
        SecretString::from(value.to_string())
    }

    fn case(strategy: Strategy) -> Case {
        let db = MemoryDatabase::new();
        db.add_user("app", "initial-1");
        db.grant("app", "read orders");
        let store = MemoryStore::new();
        let extra = match strategy {
            Strategy::SingleUser => json!({}),
            Strategy::AlternatingUsers => {
                db.add_superuser("master", "master-1");
                let master = store.create_secret("master", &secret("master", "master-1", json!({})));
                json!({"masterarn": master})
            }
        };
        let arn = store.create_secret("app", &secret("app", "initial-1", extra));
        let engine = DatabaseEngine::new(db.clone(), strategy);
        let rotor = Rotor::with_passwords(Ok(engine), store.clone(), Passwords::from_lookup(|_| None, ""));
        Case {
            db,
            store,
            arn,
            rotor,
        }
    }

    impl Case {
        fn credentials(&self, stage: &str) -> (String, String) {
            let value: Value =
                serde_json::from_str(self.store.value_at(&self.arn, stage).expect("value").expose())
                    .expect("JSON");
            (
                value["username"].as_str().unwrap_or_default().to_owned(),
                value["password"].as_str().unwrap_or_default().to_owned(),
            )
        }

        fn logs_in(&self, stage: &str) -> bool {
            let (user, password) = self.credentials(stage);
            self.db.logs_in(&user, &password)
        }
    }

    #[tokio::test]
    async fn single_user_rotates_with_no_refused_login() {
        let case = case(Strategy::SingleUser);
        Service::new(&case.store)
            .rotate(&case.rotor, &case.arn)
            .await
            .unwrap();
        assert!(case.logs_in(AWSCURRENT));
        assert!(!case.logs_in(AWSPREVIOUS), "single user: one password");
        assert_eq!(case.db.refused_logins(), 0, "{:?}", case.db.logins());
        assert_eq!(case.db.changes(), vec!["password app"]);
    }

    #[tokio::test]
    async fn single_user_falls_back_to_previous_when_current_is_refused() {
        let case = case(Strategy::SingleUser);
        Service::new(&case.store)
            .rotate(&case.rotor, &case.arn)
            .await
            .unwrap();
        // The database restored from a snapshot taken before that rotation.
        let (_, previous) = case.credentials(AWSPREVIOUS);
        case.db.set_password("app", &previous);
        Service::new(&case.store)
            .rotate(&case.rotor, &case.arn)
            .await
            .unwrap();
        assert!(case.logs_in(AWSCURRENT));
        // Without a usable previous, the error says so, and nothing changes.
        case.db.set_password("app", "something-else");
        let changes = case.db.changes().len();
        let (step, err) = Service::new(&case.store)
            .rotate(&case.rotor, &case.arn)
            .await
            .unwrap_err();
        assert_eq!((step, err.kind()), (Step::SetSecret, ErrorKind::Target));
        assert!(
            err.to_string()
                .contains("unable to log in with previous, current or pending"),
            "{err}"
        );
        assert_eq!(case.db.changes().len(), changes);
    }

    #[tokio::test]
    async fn a_pending_secret_for_another_user_is_refused_before_any_login_with_it() {
        for strategy in [Strategy::SingleUser, Strategy::AlternatingUsers] {
            let case = case(strategy);
            let token = new_token();
            case.store.rotate_secret(&case.arn, &token).unwrap();
            // The current value (its masterarn included), for another user.
            let mut forged: Value =
                serde_json::from_str(case.store.value_at(&case.arn, AWSCURRENT).unwrap().expose()).unwrap();
            (forged["username"], forged["password"]) = (json!("master"), json!("attacker-1"));
            let forged = SecretString::from(forged.to_string());
            case.store
                .put_pending(&case.arn, &token, &forged, None)
                .await
                .unwrap();
            let err = Service::new(&case.store)
                .step(&case.rotor, Step::SetSecret, &case.arn, &token)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidSecret, "{strategy}");
            assert!(err.to_string().contains("refusing"), "{strategy}: {err}");
            assert!(case.db.logins().is_empty(), "{strategy}: {:?}", case.db.logins());
            assert!(case.db.changes().is_empty(), "{strategy}");
        }
    }

    #[tokio::test]
    async fn alternating_users_swap_and_carry_privileges_from_whichever_is_current() {
        let case = case(Strategy::AlternatingUsers);
        let service = Service::new(&case.store);
        service.rotate(&case.rotor, &case.arn).await.unwrap();
        assert_eq!(case.credentials(AWSCURRENT).0, "app_clone");
        assert!(case.logs_in(AWSCURRENT) && case.logs_in(AWSPREVIOUS));
        assert_eq!(case.db.privileges("app_clone"), case.db.privileges("app"));
        // Granted to the current user (the clone), it reaches app at the next swap.
        case.db.grant("app_clone", "write orders");
        service.rotate(&case.rotor, &case.arn).await.unwrap();
        assert_eq!(case.credentials(AWSCURRENT).0, "app");
        assert!(case.db.privileges("app").contains("write orders"));
        // testSecret names a difference.
        let token = new_token();
        case.store.rotate_secret(&case.arn, &token).unwrap();
        for step in [Step::CreateSecret, Step::SetSecret] {
            service.step(&case.rotor, step, &case.arn, &token).await.unwrap();
        }
        case.db.grant("app_clone", "drop everything");
        let err = service
            .step(&case.rotor, Step::TestSecret, &case.arn, &token)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("drop everything"), "{err}");
    }

    #[tokio::test]
    async fn alternating_users_use_the_master_only_after_current_logs_in() {
        let case = case(Strategy::AlternatingUsers);
        case.db.set_password("app", "changed-by-someone");
        let (step, err) = Service::new(&case.store)
            .rotate(&case.rotor, &case.arn)
            .await
            .unwrap_err();
        assert_eq!(step, Step::SetSecret);
        assert!(
            err.to_string().contains("the master secret was not used"),
            "{err}"
        );
        assert!(
            case.db.logins().iter().all(|(user, _)| user != "master"),
            "{:?}",
            case.db.logins()
        );
    }

    #[tokio::test]
    async fn alternating_users_never_rotate_the_master_into_itself() {
        let db = MemoryDatabase::new();
        db.add_superuser("master", "master-1");
        db.add_user("master_clone", "clone-1");
        let store = MemoryStore::new();
        let master = store.create_secret("master", &secret("master", "master-1", json!({})));
        let arn = store.create_secret(
            "clone",
            &secret("master_clone", "clone-1", json!({"masterarn": master})),
        );
        let engine = DatabaseEngine::new(db.clone(), Strategy::AlternatingUsers);
        let rotor = Rotor::with_passwords(Ok(engine), store.clone(), Passwords::from_lookup(|_| None, ""));
        let (step, err) = Service::new(&store).rotate(&rotor, &arn).await.unwrap_err();
        assert_eq!((step, err.kind()), (Step::SetSecret, ErrorKind::InvalidSecret));
        assert!(err.to_string().contains("into itself"), "{err}");
        assert!(db.changes().is_empty());
    }
}

/// Alternating users with RDS-managed master secrets and RDS endpoints, on the fake driver and
/// the fake RDS API.
#[cfg(test)]
mod rds_tests {
    use std::sync::Arc;

    use secret_rotor::testing::{MemoryStore, Service};
    use secret_rotor::{ErrorKind, Passwords, Rotor, SecretString, AWSCURRENT};
    use serde_json::{json, Value};

    use super::*;
    use crate::rds::{RdsCluster, RdsInstance, CLUSTER_TAG, INSTANCE_TAG};
    use crate::testing::{MemoryDatabase, MemoryRds};

    const SUFFIX: &str = "abc.us-east-1.rds.amazonaws.com";

    fn instance(id: &str, port: u16) -> RdsInstance {
        RdsInstance {
            id: id.to_owned(),
            arn: Some(format!("arn:aws:rds:us-east-1:123456789012:db:{id}")),
            engine: "memory".to_owned(),
            endpoint: Some((format!("{id}.{SUFFIX}"), port)),
            cluster: None,
            replica_source: None,
        }
    }

    /// RDS with: instance `main` and its replica `main-replica`; an unrelated instance `other`;
    /// a cluster `aurora` with writer `aurora-1` and reader `aurora-2`.
    fn rds() -> MemoryRds {
        let rds = MemoryRds::new();
        rds.add_instance(instance("main", 5432));
        rds.add_instance(RdsInstance {
            replica_source: Some("main".to_owned()),
            ..instance("main-replica", 5432)
        });
        rds.add_instance(instance("other", 5432));
        rds.add_cluster(RdsCluster {
            id: "aurora".to_owned(),
            arn: Some("arn:aws:rds:us-east-1:123456789012:cluster:aurora".to_owned()),
            engine: "memory".to_owned(),
            endpoint: Some(format!("aurora.cluster-{SUFFIX}")),
            reader_endpoint: Some(format!("aurora.cluster-ro-{SUFFIX}")),
            port: Some(5432),
            members: vec![("aurora-1".to_owned(), true), ("aurora-2".to_owned(), false)],
        });
        for (id, _) in [("aurora-1", true), ("aurora-2", false)] {
            rds.add_instance(RdsInstance {
                cluster: Some("aurora".to_owned()),
                ..instance(id, 5432)
            });
        }
        rds
    }

    struct Case {
        db: MemoryDatabase,
        store: MemoryStore,
        rds: MemoryRds,
        arn: String,
        rotor: Rotor<DatabaseEngine<MemoryDatabase>>,
    }

    /// [`case`] on `port`, with the RDS API.
    fn case_on(host: &str, port: u16, tag: Option<(&str, &str)>) -> Case {
        case_with(host, port, tag, true)
    }

    /// A secret for `app` on `host`, whose master is an RDS-managed secret (no host) tagged
    /// `tag` = `resource`.
    fn case(host: &str, tag: Option<(&str, &str)>, with_rds: bool) -> Case {
        case_with(host, 5432, tag, with_rds)
    }

    fn case_with(host: &str, port: u16, tag: Option<(&str, &str)>, with_rds: bool) -> Case {
        let db = MemoryDatabase::new();
        db.add_user("app", "initial-1");
        db.grant("app", "read orders");
        db.add_superuser("admin", "master-1");
        let store = MemoryStore::new();
        let master = store.create_secret(
            "rds!db-1",
            &SecretString::from(json!({"username": "admin", "password": "master-1"}).to_string()),
        );
        if let Some((key, value)) = tag {
            store.tag(&master, key, value);
        }
        let value = json!({"engine": "memory", "host": host, "port": port, "username": "app",
            "password": "initial-1", "masterarn": master});
        let arn = store.create_secret("app", &SecretString::from(value.to_string()));
        let rds = rds();
        let mut engine = DatabaseEngine::new(db.clone(), Strategy::AlternatingUsers);
        if with_rds {
            engine = engine.with_rds(Arc::new(rds.clone()));
        }
        let rotor = Rotor::with_passwords(Ok(engine), store.clone(), Passwords::from_lookup(|_| None, ""));
        Case {
            db,
            store,
            rds,
            arn,
            rotor,
        }
    }

    fn instance_tag(id: &str) -> Option<(&'static str, String)> {
        Some((
            INSTANCE_TAG,
            format!("arn:aws:rds:us-east-1:123456789012:db:{id}"),
        ))
    }

    impl Case {
        async fn rotate(&self) -> Result<String, (secret_rotor::Step, Error)> {
            Service::new(&self.store).rotate(&self.rotor, &self.arn).await
        }

        fn current_logs_in(&self) -> bool {
            let value: Value = serde_json::from_str(
                self.store
                    .value_at(&self.arn, AWSCURRENT)
                    .expect("value")
                    .expose(),
            )
            .expect("JSON");
            self.db.logs_in(
                value["username"].as_str().unwrap_or_default(),
                value["password"].as_str().unwrap_or_default(),
            )
        }
    }

    fn with<'a>(tag: &'a Option<(&'static str, String)>) -> Option<(&'static str, &'a str)> {
        tag.as_ref().map(|(key, value)| (*key, value.as_str()))
    }

    #[tokio::test]
    async fn a_managed_master_of_the_instance_rotates_with_one_rds_call() {
        let tag = instance_tag("main");
        let case = case(&format!("main.{SUFFIX}"), with(&tag), true);
        case.rotate().await.unwrap();
        assert!(case.current_logs_in());
        assert_eq!(
            case.rds.calls(),
            vec![format!("DescribeDBInstances {}", tag.unwrap().1)]
        );
    }

    #[tokio::test]
    async fn a_secret_on_a_read_replica_of_the_master_instance_is_accepted() {
        let tag = instance_tag("main");
        let case = case(&format!("main-replica.{SUFFIX}"), with(&tag), true);
        case.rotate().await.unwrap();
        assert!(case.current_logs_in());
        assert!(case
            .rds
            .calls()
            .contains(&"DescribeDBInstances main-replica".to_owned()));
    }

    #[tokio::test]
    async fn a_secret_on_the_reader_or_an_instance_of_the_master_cluster_is_accepted() {
        let arn = "arn:aws:rds:us-east-1:123456789012:cluster:aurora";
        for host in [
            format!("aurora.cluster-ro-{SUFFIX}"),
            format!("aurora-2.{SUFFIX}"),
        ] {
            let case = case(&host, Some((CLUSTER_TAG, arn)), true);
            case.rotate().await.unwrap();
            assert!(case.current_logs_in(), "{host}");
        }
    }

    #[tokio::test]
    async fn a_secret_on_another_instance_is_refused_naming_both_servers() {
        let tag = instance_tag("main");
        let case = case(&format!("other.{SUFFIX}"), with(&tag), true);
        let (_, err) = case.rotate().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSecret);
        let message = err.to_string();
        assert!(
            message.contains(&format!("main.{SUFFIX}:5432 (RDS DB instance main)"))
                && message.contains(&format!("other.{SUFFIX}:5432")),
            "{message}"
        );
        assert!(case.db.changes().is_empty());
    }

    #[tokio::test]
    async fn a_look_alike_name_that_rds_does_not_list_is_refused() {
        // The first label names the replica, but RDS gives it another address.
        let tag = instance_tag("main");
        let case = case("main-replica.xyz.us-east-1.rds.amazonaws.com", with(&tag), true);
        let (_, err) = case.rotate().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSecret, "{err}");
        assert!(case.db.changes().is_empty());
    }

    #[tokio::test]
    async fn a_master_without_host_or_tag_is_refused_clearly() {
        let case = case(&format!("main.{SUFFIX}"), None, true);
        let (_, err) = case.rotate().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSecret);
        assert!(
            err.to_string().contains("not a master secret managed by RDS"),
            "{err}"
        );
        assert!(case.rds.calls().is_empty());
    }

    #[tokio::test]
    async fn a_managed_master_of_an_engine_of_another_family_is_refused() {
        let rds_engine = RdsInstance {
            engine: "oracle-ee".to_owned(),
            ..instance("oracle", 1521)
        };
        let case = case(&format!("oracle.{SUFFIX}"), with(&instance_tag("oracle")), true);
        case.rds.add_instance(rds_engine);
        let (_, err) = case.rotate().await.unwrap_err();
        assert!(err.to_string().contains("whose engine is oracle-ee"), "{err}");
    }

    #[tokio::test]
    async fn the_right_host_on_another_port_is_refused() {
        // The replica's name, but not the port RDS gives for it.
        let tag = instance_tag("main");
        let case = case_on(&format!("main-replica.{SUFFIX}"), 6543, with(&tag));
        let (_, err) = case.rotate().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidSecret, "{err}");
        assert!(case.db.changes().is_empty());
    }

    #[tokio::test]
    async fn a_master_with_a_host_on_the_cluster_endpoint_accepts_the_reader_through_rds() {
        let case = case_on(&format!("aurora.cluster-ro-{SUFFIX}"), 5432, None);
        let master = case.store.create_secret(
            "hand-made-master",
            &SecretString::from(
                json!({"username": "admin", "password": "master-1",
                       "host": format!("aurora.cluster-{SUFFIX}"), "port": 5432})
                .to_string(),
            ),
        );
        let value = json!({"engine": "memory", "host": format!("aurora.cluster-ro-{SUFFIX}"),
            "port": 5432, "username": "app", "password": "initial-1", "masterarn": master});
        let arn = case
            .store
            .create_secret("app-2", &SecretString::from(value.to_string()));
        Service::new(&case.store).rotate(&case.rotor, &arn).await.unwrap();
        assert_eq!(
            case.rds.calls(),
            vec!["DescribeDBClusters aurora".to_owned()],
            "the master's host asked about once"
        );
    }

    #[tokio::test]
    async fn without_the_rds_api_a_managed_master_is_refused_clearly() {
        let case = case(&format!("main.{SUFFIX}"), with(&instance_tag("main")), false);
        let (_, err) = case.rotate().await.unwrap_err();
        assert!(err.to_string().contains("missing required key `host`"), "{err}");
    }
}
