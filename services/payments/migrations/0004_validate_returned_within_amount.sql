-- Validates the check 0003 added NOT VALID: a scan that takes only a SHARE UPDATE EXCLUSIVE
-- lock, so charges and refunds go on meanwhile.
ALTER TABLE payments VALIDATE CONSTRAINT payments_returned_within_amount;
