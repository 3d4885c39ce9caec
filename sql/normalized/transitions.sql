-- One row per secondary status transition, in the order SageMaker returned them.
with records as (
    select * from latest_records
),

items as (
    select
        job.TrainingJobArn as training_job_arn,
        unnest(range(len(job.SecondaryStatusTransitions))) as transition_index,
        unnest(job.SecondaryStatusTransitions) as transition
    from records
)

select
    training_job_arn,
    transition_index,
    transition.Status as status,
    transition.StartTime as start_time,
    transition.EndTime as end_time,
    transition.StatusMessage as status_message
from items
