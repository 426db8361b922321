//! The MySQL / MariaDB rotation function: the MySQL driver, with the strategy of
//! `ROTATION_STRATEGY`, handed to the framework.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    secret_rotor::run(rotor_mysql::engine_from_env()).await
}
