//! A pool's queue reached through the API (`/work_pools/{name}/message_queue/*`): how an
//! agent uses the Postgres-backed queue of the zero-configuration mode.

use serde_json::{json, Value};
use stratus_store::queue::{MessageQueue, QueueError, QueueFuture, QueueInfo, Received};
use uuid::Uuid;

use super::api::{segment, Api, CallError};

pub struct HttpQueue {
    api: Api,
    pool: String,
}

impl HttpQueue {
    pub fn new(api: Api, pool_name: &str) -> Self {
        HttpQueue {
            api,
            pool: segment(pool_name),
        }
    }

    fn path(&self, op: &str) -> String {
        format!("/work_pools/{}/message_queue{op}", self.pool)
    }
}

fn error(e: CallError) -> QueueError {
    QueueError(format!("queue over the API: {e}"))
}

impl MessageQueue for HttpQueue {
    fn ensure(&self, _pool_id: Uuid) -> QueueFuture<'_, QueueInfo> {
        Box::pin(async move {
            let v = self.api.get(&self.path("")).await.map_err(error)?;
            serde_json::from_value(v).map_err(|e| QueueError(e.to_string()))
        })
    }

    fn remove(&self, _pool_id: Uuid) -> QueueFuture<'_, ()> {
        Box::pin(async { Err(QueueError("agents do not remove queues".into())) })
    }

    fn send<'a>(&'a self, _pool_id: Uuid, _body: &'a Value, _delay: u32) -> QueueFuture<'a, ()> {
        Box::pin(async { Err(QueueError("agents do not send messages".into())) })
    }

    fn receive(
        &self,
        _pool_id: Uuid,
        max: u32,
        wait: u32,
        visibility: u32,
    ) -> QueueFuture<'_, Vec<Received>> {
        Box::pin(async move {
            let body = json!({"max_messages": max, "wait_seconds": wait, "visibility_timeout": visibility});
            let v = self
                .api
                .post(&self.path("/receive"), &body)
                .await
                .map_err(error)?;
            serde_json::from_value(v).map_err(|e| QueueError(e.to_string()))
        })
    }

    fn delete<'a>(&'a self, _pool_id: Uuid, receipt: &'a str) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            self.api
                .post(&self.path("/delete"), &json!({"receipt": receipt}))
                .await
                .map_err(error)?;
            Ok(())
        })
    }

    fn release<'a>(&'a self, _pool_id: Uuid, receipt: &'a str, seconds: u32) -> QueueFuture<'a, ()> {
        Box::pin(async move {
            self.api
                .post(
                    &self.path("/release"),
                    &json!({"receipt": receipt, "visibility_timeout": seconds}),
                )
                .await
                .map_err(error)?;
            Ok(())
        })
    }
}
