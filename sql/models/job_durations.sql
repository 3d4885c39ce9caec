-- One row per training job: seconds spent in each secondary status, startup and wall time.
-- A transition still open (a running job) counts up to the job's last fetch.
with jobs as (
    select * from jobs
),

transitions as (
    select * from transitions
),

final_statuses as (
    select * from final_statuses
),

finality as (
    -- Final: a status after which the job no longer changes (an unknown new status is not final).
    select
        training_job_arn,
        training_job_status in (select final_statuses.status from final_statuses) as is_final
    from jobs
),

transition_seconds as (
    select
        transitions.training_job_arn,
        lower(transitions.status) as status,
        greatest(
            epoch_ms(coalesce(transitions.end_time, jobs.fetched_at)) - epoch_ms(transitions.start_time), 0
        ) / 1000.0 as seconds
    from transitions
    join jobs using (training_job_arn)
    where transitions.start_time is not null
),

seconds_by_job as (
    select
        training_job_arn,
        sum(seconds) filter (where status = 'starting') as starting_seconds,
        sum(seconds) filter (where status = 'downloading') as downloading_seconds,
        sum(seconds) filter (where status = 'training') as training_seconds,
        sum(seconds) filter (where status = 'uploading') as uploading_seconds,
        sum(seconds) filter (where status = 'interrupted') as interrupted_seconds,
        sum(seconds) filter (where status = 'stopping') as stopping_seconds,
        sum(seconds) filter (
            where status not in ('starting', 'downloading', 'training', 'uploading', 'interrupted', 'stopping')
        ) as other_seconds,
        count(*) filter (where status = 'interrupted') as interruption_count
    from transition_seconds
    group by training_job_arn
),

final as (
    select
        jobs.training_job_arn,
        jobs.training_job_status,
        jobs.instance_type,
        coalesce(seconds_by_job.starting_seconds, 0) as starting_seconds,
        coalesce(seconds_by_job.downloading_seconds, 0) as downloading_seconds,
        coalesce(seconds_by_job.training_seconds, 0) as training_seconds,
        coalesce(seconds_by_job.uploading_seconds, 0) as uploading_seconds,
        coalesce(seconds_by_job.interrupted_seconds, 0) as interrupted_seconds,
        coalesce(seconds_by_job.stopping_seconds, 0) as stopping_seconds,
        coalesce(seconds_by_job.other_seconds, 0) as other_seconds,
        coalesce(seconds_by_job.interruption_count, 0) as interruption_count,
        (epoch_ms(jobs.training_start_time) - epoch_ms(jobs.creation_time)) / 1000.0 as startup_seconds,
        greatest(
            epoch_ms(
                case
                    when not finality.is_final then jobs.fetched_at
                    else coalesce(jobs.training_end_time, jobs.last_modified_time, jobs.fetched_at)
                end
            ) - epoch_ms(jobs.creation_time),
            0
        ) / 1000.0 as wall_seconds,
        finality.is_final
    from jobs
    join finality using (training_job_arn)
    left join seconds_by_job using (training_job_arn)
)

select * from final
