-- One row per final metric a job reported.
with records as (
    select * from latest_records
),

items as (
    select
        job.TrainingJobArn as training_job_arn,
        unnest(range(len(job.FinalMetricDataList))) as metric_index,
        unnest(job.FinalMetricDataList) as metric
    from records
)

select
    training_job_arn,
    metric_index,
    metric.MetricName as metric_name,
    metric.Value as value,
    metric.Timestamp as timestamp
from items
