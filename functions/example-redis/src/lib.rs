//! An example engine, written as a platform engineer would for a target this project does not
//! ship: a Redis (or Valkey, or ElastiCache RBAC) ACL user whose password is rotated by an
//! administrator account.
//!
//! Redis lets a user hold several passwords, which makes the rotation gap-free: setSecret *adds*
//! the pending password (the current one keeps working), testSecret logs in with it, and the
//! finish hook *removes* the superseded one once `AWSCURRENT` has moved.
//!
//! Secret value: `{"engine": "redis", "host", "port" (default 6379), "username", "password",
//! "masterarn"}`; the master secret holds `username` and `password` of an account allowed to run
//! `ACL SETUSER`. Other keys are kept.

mod resp;

use resp::{Connection, Reply};
use secret_rotor::zeroize::Zeroizing;
use secret_rotor::{Context, Deadline, Engine, Error, SecretJson, SecretString};

/// The engine. Stateless: everything comes from the secret and the context.
pub struct RedisAclEngine;

/// A parsed secret (the rotated user's, or the master's).
pub struct RedisCredential {
    doc: SecretJson,
    host: String,
    port: u16,
    username: String,
    password: SecretString,
}

impl RedisCredential {
    fn parse(value: &SecretString) -> Result<Self, Error> {
        let doc = SecretJson::parse(value)?;
        Ok(Self {
            host: doc.required_str("host")?.to_owned(),
            port: doc.port("port", 6379)?,
            username: doc.required_str("username")?.to_owned(),
            password: doc.required_secret("password")?,
            doc,
        })
    }

    /// Opens a connection authenticated as this user.
    async fn login(&self, deadline: Deadline) -> Result<Connection, Error> {
        let mut conn = Connection::connect(&self.host, self.port, deadline).await?;
        match conn
            .command(&["AUTH", &self.username, self.password.expose()])
            .await?
        {
            Reply::Status(_) => Ok(conn),
            Reply::Error(code) => Err(Error::target(format!(
                "user {} cannot log in ({code})",
                self.username
            ))),
        }
    }

    /// Runs `ACL SETUSER <user> <rule>` on this (master) connection's server.
    async fn set_user(conn: &mut Connection, username: &str, rule: &str) -> Result<(), Error> {
        match conn.command(&["ACL", "SETUSER", username, rule]).await? {
            Reply::Status(_) => Ok(()),
            Reply::Error(code) => Err(Error::target(format!(
                "ACL SETUSER {username} was refused ({code})"
            ))),
        }
    }
}

impl RedisAclEngine {
    /// Logs in as the master named by the secret's `masterarn`, on the same host.
    async fn master(&self, ctx: &Context<'_, Self>, secret: &RedisCredential) -> Result<Connection, Error> {
        let arn = secret.doc.required_str("masterarn")?;
        let master =
            RedisCredential::parse(&ctx.read_secret(arn).await?).map_err(|e| e.context("master secret"))?;
        if master.host != secret.host || master.port != secret.port {
            return Err(Error::invalid_secret("the master secret is for another server"));
        }
        master.login(ctx.deadline()).await
    }
}

impl Engine for RedisAclEngine {
    type Secret = RedisCredential;

    fn name(&self) -> &str {
        "example-redis-acl"
    }

    fn parse(&self, value: &SecretString) -> Result<RedisCredential, Error> {
        let secret = RedisCredential::parse(value)?;
        if secret.doc.required_str("engine")? != "redis" {
            return Err(Error::invalid_secret(
                "key `engine` must be `redis` for this function",
            ));
        }
        secret.doc.required_str("masterarn")?;
        Ok(secret)
    }

    fn render(&self, secret: &RedisCredential) -> Result<SecretString, Error> {
        let mut doc = secret.doc.clone();
        doc.set_secret("password", &secret.password);
        Ok(doc.to_secret_string())
    }

    async fn create_pending(&self, ctx: &Context<'_, Self>) -> Result<RedisCredential, Error> {
        let current = ctx.current().await?;
        let password = ctx.new_password().await?;
        let mut doc = current.doc.clone();
        doc.set_secret("password", &password);
        Ok(RedisCredential {
            doc,
            password,
            host: current.host.clone(),
            port: current.port,
            username: current.username.clone(),
        })
    }

    async fn set_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        let pending = ctx.pending().await?;
        if pending.login(ctx.deadline()).await.is_ok() {
            return Ok(()); // a retry: already added
        }
        let current = ctx.current().await?;
        if pending.username != current.username || pending.host != current.host {
            return Err(Error::invalid_secret(
                "pending username or host differs from current",
            ));
        }
        current
            .login(ctx.deadline())
            .await
            .map_err(|e| e.context("current secret"))?;
        let mut master = self.master(ctx, current).await?;
        let rule = Zeroizing::new(format!(">{}", pending.password.expose()));
        RedisCredential::set_user(&mut master, &pending.username, &rule).await
    }

    async fn test_pending(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        let mut conn = ctx.pending().await?.login(ctx.deadline()).await?;
        // Logged in is the proof; PING shows the session works (NOPERM: the user's ACL may not
        // include the connection commands, which is not this rotation's business).
        match conn.command(&["PING"]).await? {
            Reply::Status(pong) if pong == "PONG" => Ok(()),
            Reply::Error(code) if code == "NOPERM" => Ok(()),
            _ => Err(Error::target("PING with the pending secret failed")),
        }
    }

    async fn after_finish(&self, ctx: &Context<'_, Self>) -> Result<(), Error> {
        let (current, Some(previous)) = (ctx.current().await?, ctx.previous().await?) else {
            return Ok(());
        };
        // Idempotent: a retried finish finds the old password already gone.
        if previous.password == current.password || previous.login(ctx.deadline()).await.is_err() {
            return Ok(());
        }
        let mut master = self.master(ctx, current).await?;
        let rule = Zeroizing::new(format!("<{}", previous.password.expose()));
        RedisCredential::set_user(&mut master, &previous.username, &rule).await
    }
}
