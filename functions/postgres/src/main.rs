//! The PostgreSQL rotation function: the PostgreSQL driver, with the strategy of
//! `ROTATION_STRATEGY`, handed to the framework.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    secret_rotor::run(rotor_postgres::engine_from_env()).await
}
