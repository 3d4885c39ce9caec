-- One row per account the bill has usage for: how far it reaches. Usage lines only: a credit or an
-- adjustment may span the whole month without the usage being billed. The reconciliation and the daily
-- and monthly rollups read it to tell "not billed yet" from "billed nothing".
with billing_line_items as (
    select * from billing_line_items
),

final as (
    select
        account_id,
        max(usage_end) as billed_until
    from billing_line_items
    where line_item_type in ('Usage', 'SavingsPlanCoveredUsage', 'DiscountedUsage')
    group by account_id
)

select * from final
