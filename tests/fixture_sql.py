"""SQL shared by hand-built test warehouses."""

# What the supply loader derives from temperature readings (warehouse.inputs.platform.supply.build_excursions),
# for fixtures that insert supply_event rows directly instead of loading EPCIS documents.
DERIVE_COLD_CHAIN_EXCURSIONS = """
    INSERT INTO cold_chain_excursion (batch_id, product_id, event_id, event_time, biz_step, consignment_id, region,
                                      min_temp_c, max_temp_c, storage_min_c, storage_max_c)
    SELECT s.batch_id, b.product_id, s.event_id, s.event_time, s.biz_step, s.consignment_id, s.region,
           s.min_temp_c, s.max_temp_c, p.storage_min_c, p.storage_max_c
    FROM supply_event s JOIN batch b USING (batch_id) JOIN product p ON p.product_id = b.product_id
    WHERE s.max_temp_c > p.storage_max_c OR s.min_temp_c < p.storage_min_c
"""
