-- Recommendations ("bought together") start from the orders that have a line of one product:
-- find those lines by product rather than reading every order line. Keep in step with the
-- other dialect's 0008: the schema equivalence test compares the two after migration.
CREATE INDEX order_lines_product_id_idx ON order_lines (product_id, order_id);
