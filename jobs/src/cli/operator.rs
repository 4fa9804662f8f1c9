//! Operator commands against a running Ballista scheduler, through its REST API (served on
//! the scheduler's port): list jobs, show one job and its stages, cancel a job.

use serde_json::Value;

use crate::error::{Error, Result};

/// A client of the scheduler's REST API at `base` (`http://host:port`).
pub struct SchedulerApi {
    base: String,
    http: reqwest::Client,
}

impl SchedulerApi {
    pub fn new(base: String) -> Self {
        SchedulerApi {
            base,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: reqwest::Error| Error::Stage {
            stage: "jobs".into(),
            message: format!(
                "cannot reach the scheduler at {url}: {e} (is it running? `deploy/local/cluster.sh status`)"
            ),
        };
        let response = self.http.request(method, &url).send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.text().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(Error::Usage(format!("scheduler answered {status} for {url}: {body}")));
        }
        if body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&body).map_err(|source| Error::Json { path: url, source })
    }

    /// All jobs the scheduler knows, newest first.
    pub async fn jobs(&self) -> Result<Vec<Value>> {
        match self.call(reqwest::Method::GET, "/api/jobs").await? {
            Value::Array(jobs) => Ok(jobs),
            other => Err(Error::Usage(format!("unexpected /api/jobs answer: {other}"))),
        }
    }

    /// One job and its stages.
    pub async fn job(&self, id: &str) -> Result<(Value, Value)> {
        check_job_id(id)?;
        let job = self.call(reqwest::Method::GET, &format!("/api/job/{id}")).await?;
        let stages = self
            .call(reqwest::Method::GET, &format!("/api/job/{id}/stages"))
            .await?;
        Ok((job, stages))
    }

    /// Asks the scheduler to cancel a job.
    pub async fn cancel(&self, id: &str) -> Result<Value> {
        check_job_id(id)?;
        self.call(reqwest::Method::PATCH, &format!("/api/job/{id}")).await
    }

    /// Whether the scheduler's Prometheus metrics endpoint answers.
    pub async fn metrics(&self) -> Result<String> {
        let url = format!("{}/api/metrics", self.base);
        let response = self.http.get(&url).send().await.map_err(|e| Error::Stage {
            stage: "jobs".into(),
            message: format!("{url}: {e}"),
        })?;
        response.text().await.map_err(|e| Error::Stage {
            stage: "jobs".into(),
            message: format!("{url}: {e}"),
        })
    }
}

fn check_job_id(id: &str) -> Result<()> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Error::Usage(format!(
            "{id:?} is not a job id; list them with `ebroker jobs list`"
        )));
    }
    Ok(())
}

/// The job list as an aligned table.
pub fn render_jobs(jobs: &[Value]) -> String {
    let mut out = format!(
        "{:<16} {:<10} {:>7} {:>8}  {}\n",
        "job_id", "status", "stages", "percent", "detail"
    );
    for job in jobs {
        let text = |k: &str| {
            job.get(k)
                .map(|v| v.as_str().map_or(v.to_string(), str::to_string))
                .unwrap_or_default()
        };
        out.push_str(&format!(
            "{:<16} {:<10} {:>7} {:>8}  {}\n",
            text("job_id"),
            text("status"),
            format!("{}/{}", text("completed_stages"), text("num_stages")),
            text("percent_complete"),
            text("job_status")
        ));
    }
    out
}
