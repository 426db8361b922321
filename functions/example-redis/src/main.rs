//! The example Redis ACL rotation function: the engine, handed to the framework.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    secret_rotor::run(rotor_example_redis::RedisAclEngine).await
}
