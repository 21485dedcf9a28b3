//! Store and ingestion tests against the local DynamoDB emulator (moto). `make test` starts
//! it; run alone with `moto_server -p 5000` and `AWS_ENDPOINT_URL=http://127.0.0.1:5000`.

mod support;

mod exactly_once;
mod experiments;
mod nudges;
mod store;
