-- One row per tag of a job.
with records as (
    select * from latest_records
),

items as (
    select
        job.TrainingJobArn as training_job_arn,
        unnest(job.Tags) as tag
    from records
)

select
    training_job_arn,
    tag.Key as key,
    tag.Value as value
from items
