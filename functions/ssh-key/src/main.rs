//! The SSH key rotation function: the SSH key engine, configured from the environment, handed to
//! the framework.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    secret_rotor::run(rotor_ssh_key::SshKeyEngine::from_env()).await
}
