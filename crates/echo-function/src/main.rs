//! A function that answers its payload: measures the Runtime API server's own overhead.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(lambda_runtime::service_fn(
        |event: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            Ok::<_, lambda_runtime::Error>(event.payload)
        },
    ))
    .await
}
