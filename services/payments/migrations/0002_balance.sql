-- The credit limit is a balance: what a user's captured, unrefunded payments add up to.
CREATE INDEX payments_outstanding ON payments (user_id) WHERE status = 'captured';
