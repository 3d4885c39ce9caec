-- One row per UTC month, account, region, instance type, status and value of each cost-allocation tag.
-- Every configured tag key gets its own full breakdown: sum one allocation_tag_key at a time.
with job_cost_days_tagged as (
    select * from job_cost_days_tagged
),

final as (
    select
        month,
        account_id,
        region,
        instance_type,
        training_job_status,
        allocation_tag_key,
        allocation_tag_value,
        count(distinct training_job_arn) as jobs,
        count(distinct training_job_arn) filter (where not is_priced) as unpriced_jobs,
        coalesce(sum(instance_hours), 0) as instance_hours,
        sum(accelerator_hours) as accelerator_hours,
        sum(compute_cost_usd) as compute_cost_usd,
        sum(warm_pool_cost_usd) as warm_pool_cost_usd,
        sum(storage_cost_usd) as storage_cost_usd,
        sum(total_cost_usd) as total_cost_usd,
        sum(spot_savings_usd) as spot_savings_usd
    from job_cost_days_tagged
    group by all
)

select * from final
