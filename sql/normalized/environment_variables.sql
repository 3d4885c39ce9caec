-- One row per container environment variable a job set: names only (values are redacted at extraction).
with records as (
    select * from latest_records
),

items as (
    select
        job.TrainingJobArn as training_job_arn,
        unnest(map_keys(job.Environment)) as name
    from records
)

select
    training_job_arn,
    name
from items
