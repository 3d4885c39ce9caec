-- One row per UTC month, account, region, instance type, status and value of each cost-allocation tag:
-- the estimates, and beside them what the bill charged (billed_*), in the months it has line items for.
-- Every configured tag key gets its own full breakdown: sum one allocation_tag_key at a time.
with job_cost_days_tagged as (
    select * from job_cost_days_tagged
),

billed_cost_days_tagged as (
    select * from billed_cost_days_tagged
),


estimated as (
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
),

billed as (
    select
        month,
        account_id,
        region,
        instance_type,
        training_job_status,
        allocation_tag_key,
        allocation_tag_value,
        sum(effective_cost_usd) as billed_effective_cost_usd,
        sum(unblended_cost_usd) as billed_unblended_cost_usd,
        sum(list_cost_usd) as billed_list_cost_usd
    from billed_cost_days_tagged
    group by all
),

coverage as (
    select * from bill_coverage
),

joined as (
    select
        *,
        -- The bill covers a month once it has the account's usage up to the month's end (a UTC instant).
        coalesce(coverage.billed_until >= (month + interval 1 month) at time zone 'UTC', false)
            as bill_covers_month,
        billed.month is not null or bill_covers_month as has_bill_figures
    from estimated
    full outer join billed
        using (month, account_id, region, instance_type, training_job_status, allocation_tag_key, allocation_tag_value)
    left join coverage using (account_id)
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
        coalesce(jobs, 0) as jobs,
        coalesce(unpriced_jobs, 0) as unpriced_jobs,
        coalesce(instance_hours, 0) as instance_hours,
        accelerator_hours,
        compute_cost_usd,
        warm_pool_cost_usd,
        storage_cost_usd,
        total_cost_usd,
        spot_savings_usd,
        -- The bill's figures: null in a month it has no line for and does not cover (not billed yet, or no
        -- bill loaded); 0 in a covered month it charged nothing for.
        case when has_bill_figures then coalesce(billed_effective_cost_usd, 0) end as billed_effective_cost_usd,
        case when has_bill_figures then coalesce(billed_unblended_cost_usd, 0) end as billed_unblended_cost_usd,
        case when has_bill_figures then coalesce(billed_list_cost_usd, 0) end as billed_list_cost_usd,
        bill_covers_month
    from joined
)

select * from final
