-- One row per UTC month and value of each cost-allocation tag: money spent on jobs that failed, were
-- stopped, hit their runtime limit or (spot) their wait limit, and on warm pools kept idle, with the most
-- frequent failure reasons. Retained warm-pool time is idle unless another job reused the instances.
-- Who stopped a job is not in the API's record: stopped_cost_usd is every user or caller stop.
with job_cost_days_tagged as (
    select * from job_cost_days_tagged
),

labelled as (
    select
        month,
        allocation_tag_key,
        allocation_tag_value,
        training_job_arn,
        training_job_status,
        secondary_status,
        failure_reason,
        compute_cost_usd + storage_cost_usd as run_cost_usd,
        warm_pool_cost_usd,
        warm_pool_reused
    from job_cost_days_tagged
),

reason_counts as (
    select
        month,
        allocation_tag_key,
        allocation_tag_value,
        failure_reason,
        count(distinct training_job_arn) as jobs
    from labelled
    where failure_reason is not null
    group by month, allocation_tag_key, allocation_tag_value, failure_reason
),

ranked_reasons as (
    select
        *,
        row_number() over (
            partition by month, allocation_tag_key, allocation_tag_value order by jobs desc, failure_reason asc
        ) as rank
    from reason_counts
),

reasons as (
    select
        month,
        allocation_tag_key,
        allocation_tag_value,
        string_agg(failure_reason || ' (' || jobs || ')', '; ' order by jobs desc, failure_reason asc)
            as top_failure_reasons
    from ranked_reasons
    where rank <= 3
    group by month, allocation_tag_key, allocation_tag_value
),

totals as (
    select
        month,
        allocation_tag_key,
        allocation_tag_value,
        count(distinct training_job_arn) filter (where training_job_status = 'Failed') as failed_jobs,
        coalesce(sum(run_cost_usd) filter (where training_job_status = 'Failed'), 0) as failed_cost_usd,
        coalesce(sum(run_cost_usd) filter (where secondary_status = 'Stopped'), 0) as stopped_cost_usd,
        coalesce(sum(run_cost_usd) filter (where secondary_status = 'MaxRuntimeExceeded'), 0)
            as max_runtime_exceeded_cost_usd,
        coalesce(sum(run_cost_usd) filter (where secondary_status = 'MaxWaitTimeExceeded'), 0)
            as max_wait_time_exceeded_cost_usd,
        coalesce(sum(warm_pool_cost_usd) filter (where not warm_pool_reused), 0) as idle_warm_pool_cost_usd,
        coalesce(sum(warm_pool_cost_usd) filter (where warm_pool_reused), 0) as reused_warm_pool_cost_usd
    from labelled
    group by month, allocation_tag_key, allocation_tag_value
),

final as (
    select
        totals.*,
        failed_cost_usd + stopped_cost_usd + max_runtime_exceeded_cost_usd + max_wait_time_exceeded_cost_usd
        + idle_warm_pool_cost_usd as wasted_cost_usd,
        reasons.top_failure_reasons
    from totals
    left join reasons using (month, allocation_tag_key, allocation_tag_value)
)

select * from final
