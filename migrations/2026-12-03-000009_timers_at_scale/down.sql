DROP INDEX product_instances_contact;
