package sqlscope_test

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tenantguard/tenantguard/detector/sqlscope"
)

// sqlTables are the tenant-scoped tables of these tests: two in any schema
// and one only in schema shop.
var sqlTables = []string{"orders", "stock", "shop.invoices"}

func newSQLScope(tb testing.TB) *sqlscope.Scope {
	tb.Helper()
	s, err := sqlscope.New(sqlTables, "tenant_id")
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

type sqlCase struct {
	name  string
	query string
	want  []string // nil: scoped, or nothing to judge
}

func runSQLCases(t *testing.T, cases []sqlCase) {
	t.Helper()
	s := newSQLScope(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := s.Unscoped(tc.query)
			if !slices.Equal(got, tc.want) || (tc.want == nil) != (got == nil) {
				t.Errorf("Unscoped(%q)\n got %q\nwant %q", tc.query, got, tc.want)
			}
			// The cache answers alike: not admitted, admitted, then remembered.
			for i := range 3 {
				cached, joined := s.UnscopedCached(tc.query)
				if !slices.Equal(cached, got) || joined != strings.Join(got, ",") {
					t.Errorf("UnscopedCached(%q), call %d = %q, %q; Unscoped = %q", tc.query, i+1, cached, joined, got)
				}
			}
		})
	}
}

var (
	wantOrders   = []string{"orders"}
	wantStock    = []string{"stock"}
	wantInvoices = []string{"shop.invoices"}
	wantBoth     = []string{"orders", "stock"}
)

func TestSQLScopeCaseAndNames(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"upper", "SELECT * FROM ORDERS WHERE TENANT_ID = ?", nil},
		{"lower", "select * from orders where tenant_id = ?", nil},
		{"mixed", "Select * From Orders Where Tenant_Id = ?", nil},
		{"missing", "SELECT id, total FROM orders WHERE status = 'open'", wantOrders},
		{"missing mixed case", "select id from OrDeRs", wantOrders},
		{"no where", "SELECT count(*) FROM orders", wantOrders},
		{"other table", "SELECT * FROM customers WHERE id = ?", nil},
		{"longer name", "SELECT * FROM orders_archive", nil},
		{"name inside word", "SELECT * FROM preorders", nil},
		{"other column", "SELECT * FROM orders WHERE tenant = ?", wantOrders},
		{"column with suffix", "SELECT * FROM orders WHERE tenant_id_old = ?", wantOrders},
		{"column only in select list", "SELECT tenant_id FROM orders", wantOrders},
		{"column name as table alias", "SELECT * FROM orders tenant_id WHERE id = ?", wantOrders},
		{"no table mentioned", "SELECT 1", nil},
		{"table only as column", "SELECT orders FROM customers", nil},
	})
}

func TestSQLScopeQuoting(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"double quotes", `SELECT * FROM "orders" WHERE "tenant_id" = $1`, nil},
		{"double quotes unscoped", `SELECT * FROM "orders"`, wantOrders},
		{"quoted upper table", `SELECT * FROM "ORDERS" WHERE id = 1`, wantOrders},
		{"quoted column mixed case", `SELECT * FROM orders WHERE "Tenant_ID" = ?`, nil},
		{"quoted qualified", `SELECT * FROM "orders" WHERE "orders"."tenant_id" = $1`, nil},
		{"backticks", "SELECT * FROM `orders` WHERE `tenant_id` = ?", nil},
		{"backticks unscoped", "SELECT * FROM `shop`.`orders` WHERE `id` = ?", wantOrders},
		{"backtick qualified", "SELECT * FROM `orders` `o` WHERE `o`.`tenant_id` = ?", nil},
		{"brackets", "SELECT * FROM [orders] WHERE [tenant_id] = @tenant", nil},
		{"brackets schema", "SELECT * FROM [dbo].[orders] o WHERE o.[tenant_id] = @p1", nil},
		{"brackets unscoped", "SELECT * FROM [dbo].[orders] WHERE [id] = @p1", wantOrders},
		{"array subscript is not a quote", "SELECT * FROM orders WHERE tags[1] = 'x' AND tenant_id = ?", nil},
		{"array literal", "SELECT * FROM orders WHERE tenant_id = ANY(ARRAY[?, ?])", nil},
		{"quoted other column", `SELECT * FROM orders WHERE "tenant" = ?`, wantOrders},
	})
}

func TestSQLScopeSchemas(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"configured schema", "SELECT * FROM shop.invoices", wantInvoices},
		{"configured schema scoped", "SELECT * FROM shop.invoices WHERE tenant_id = ?", nil},
		{"configured schema, other schema", "SELECT * FROM billing.invoices", nil},
		{"configured schema, no schema", "SELECT * FROM invoices", nil},
		{"configured schema quoted", `SELECT * FROM "Shop"."Invoices"`, wantInvoices},
		{"configured schema with catalog", "SELECT * FROM db.shop.invoices", wantInvoices},
		{"qualified by schema.table", "SELECT * FROM shop.invoices WHERE shop.invoices.tenant_id = ?", nil},
		{"qualified by table", "SELECT * FROM shop.invoices WHERE invoices.tenant_id = ?", nil},
		{"qualified by wrong schema", "SELECT * FROM shop.invoices WHERE billing.invoices.tenant_id = ?", wantInvoices},
		{"any schema", "SELECT * FROM public.orders", wantOrders},
		{"any schema with catalog", "SELECT * FROM db.public.orders WHERE id = 1", wantOrders},
		{"any schema scoped", "SELECT * FROM public.orders WHERE public.orders.tenant_id = ?", nil},
	})
}

func TestSQLScopeAliases(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"alias", "SELECT * FROM orders o WHERE o.tenant_id = ?", nil},
		{"AS alias", "SELECT * FROM orders AS o WHERE o.tenant_id = ?", nil},
		{"unqualified with alias", "SELECT * FROM orders o WHERE tenant_id = ?", nil},
		{"wrong alias", "SELECT * FROM orders o WHERE x.tenant_id = ?", wantOrders},
		{"name hidden by alias", "SELECT * FROM orders o WHERE orders.tenant_id = ?", wantOrders},
		{"name without alias", "SELECT * FROM orders WHERE orders.tenant_id = ?", nil},
		{"quoted alias", `SELECT * FROM orders AS "O" WHERE "o".tenant_id = ?`, nil},
		{"alias with column list", "SELECT * FROM orders AS o(a, b, tenant_id) WHERE o.tenant_id = ?", nil},
		{"hint after table", "SELECT * FROM orders o WITH (NOLOCK) WHERE o.tenant_id = @t", nil},
		{"index hint", "SELECT * FROM orders o FORCE INDEX (by_tenant) WHERE o.tenant_id = ?", nil},
		{"index hint unscoped", "SELECT * FROM orders USE INDEX (i) WHERE id = ?", wantOrders},
	})
}

func TestSQLScopeJoins(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"joined table unscoped", "SELECT * FROM orders o JOIN stock s ON s.sku = o.sku WHERE o.tenant_id = $1", wantStock},
		{"equality in ON", "SELECT * FROM orders o JOIN stock s ON s.sku = o.sku AND s.tenant_id = o.tenant_id WHERE o.tenant_id = $1", nil},
		{"equality in WHERE", "SELECT * FROM orders o JOIN stock s ON s.sku = o.sku WHERE o.tenant_id = $1 AND s.tenant_id = o.tenant_id", nil},
		{"equality reversed", "SELECT * FROM orders o JOIN stock s ON o.tenant_id = s.tenant_id WHERE o.tenant_id = $1", nil},
		{"own predicate in ON", "SELECT * FROM orders o JOIN stock s ON s.sku = o.sku AND s.tenant_id = ? WHERE o.tenant_id = ?", nil},
		{"own predicate in WHERE", "SELECT * FROM orders o JOIN stock s ON s.sku = o.sku WHERE o.tenant_id = ? AND s.tenant_id = ?", nil},
		{"scoped through the joined table", "SELECT * FROM orders o JOIN stock s ON s.tenant_id = o.tenant_id WHERE s.tenant_id = ?", nil},
		{"equality alone scopes neither", "SELECT * FROM orders o JOIN stock s ON s.tenant_id = o.tenant_id", wantBoth},
		{"neither scoped", "SELECT * FROM orders o JOIN stock s ON s.sku = o.sku", wantBoth},
		{"equality to an unscoped table", "SELECT * FROM orders o JOIN stock s ON s.tenant_id = c.tenant_id JOIN customers c ON c.id = o.customer_id WHERE o.tenant_id = ?", wantStock},
		{"chain", "SELECT * FROM orders o JOIN stock s ON s.tenant_id = o.tenant_id JOIN shop.invoices i ON i.tenant_id = s.tenant_id WHERE o.tenant_id = ?", nil},
		{"unscoped side table", "SELECT * FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.tenant_id = ?", nil},
		{"comma join", "SELECT * FROM orders o, stock s WHERE o.sku = s.sku AND o.tenant_id = ? AND s.tenant_id = o.tenant_id", nil},
		{"comma join unscoped", "SELECT * FROM orders o, stock s WHERE o.sku = s.sku AND o.tenant_id = ?", wantStock},
		{"equality under OR", "SELECT * FROM orders o JOIN stock s ON s.sku = o.sku OR s.tenant_id = o.tenant_id WHERE o.tenant_id = ?", wantStock},
		{"self join", "SELECT * FROM orders a JOIN orders b ON b.parent = a.id WHERE a.tenant_id = ?", wantOrders},
		{"self join scoped", "SELECT * FROM orders a JOIN orders b ON b.parent = a.id AND b.tenant_id = a.tenant_id WHERE a.tenant_id = ?", nil},
		{"unqualified equality", "SELECT * FROM orders o JOIN stock s ON s.sku = o.sku AND s.tenant_id = tenant_id WHERE o.tenant_id = ?", nil},

		{"left join scoped", "SELECT * FROM orders o LEFT JOIN stock s ON s.sku = o.sku AND s.tenant_id = o.tenant_id WHERE o.tenant_id = ?", nil},
		{"left join ON does not filter the left", "SELECT * FROM orders o LEFT OUTER JOIN stock s ON s.sku = o.sku AND o.tenant_id = ? AND s.tenant_id = ?", wantOrders},
		{"left join equality does not scope the left", "SELECT * FROM orders o LEFT JOIN stock s ON s.tenant_id = o.tenant_id WHERE s.tenant_id = ?", wantOrders},
		{"right join", "SELECT * FROM orders o RIGHT JOIN stock s ON o.tenant_id = s.tenant_id WHERE s.tenant_id = ?", nil},
		{"right join ON does not filter the right", "SELECT * FROM orders o RIGHT JOIN stock s ON s.sku = o.sku AND s.tenant_id = ? WHERE o.tenant_id = ?", wantStock},
		{"full join", "SELECT * FROM orders o FULL JOIN stock s ON s.tenant_id = o.tenant_id WHERE o.tenant_id = ?", wantStock},
		{"inner join keyword", "SELECT * FROM orders o INNER JOIN stock s ON s.tenant_id = o.tenant_id WHERE o.tenant_id = ?", nil},
		{"cross join", "SELECT * FROM orders o CROSS JOIN stock s WHERE o.tenant_id = ? AND s.tenant_id = ?", nil},
		{"straight join", "SELECT * FROM orders o STRAIGHT_JOIN stock s ON s.tenant_id = o.tenant_id WHERE o.tenant_id = ?", nil},
		{"using tenant column", "SELECT * FROM orders o JOIN stock s USING (sku, tenant_id) WHERE o.tenant_id = ?", nil},
		{"using without tenant column", "SELECT * FROM orders o JOIN stock s USING (sku) WHERE o.tenant_id = ?", wantStock},
		{"natural join", "SELECT * FROM orders NATURAL JOIN stock WHERE tenant_id = ?", nil},
		{"natural join scoped through the other", "SELECT * FROM orders o NATURAL JOIN stock s WHERE o.tenant_id = ?", nil},
		{"parenthesised join", "SELECT * FROM (orders o JOIN stock s ON s.tenant_id = o.tenant_id) WHERE o.tenant_id = ?", nil},
		{"parenthesised join unscoped", "SELECT * FROM (orders o JOIN stock s ON s.sku = o.sku) WHERE o.tenant_id = ?", wantStock},
		{"lateral", "SELECT * FROM orders o, LATERAL (SELECT * FROM stock s WHERE s.sku = o.sku AND s.tenant_id = o.tenant_id) x WHERE o.tenant_id = ?", nil},
		{"lateral unscoped", "SELECT * FROM orders o CROSS JOIN LATERAL (SELECT * FROM stock s WHERE s.sku = o.sku) x WHERE o.tenant_id = ?", wantStock},
		{"table function", "SELECT * FROM orders o, unnest(o.tags) t WHERE o.tenant_id = ?", nil},
		{"function named like a table", "SELECT * FROM stock(?) WHERE x = 1", nil},
		{"function in ON", "SELECT * FROM orders o LEFT JOIN stock s ON LEFT(s.sku, 3) = o.sku AND s.tenant_id = o.tenant_id WHERE o.tenant_id = ?", nil},
	})
}

func TestSQLScopePlaceholdersAndValues(t *testing.T) {
	where := func(pred string) string { return "SELECT * FROM orders WHERE " + pred }
	runSQLCases(t, []sqlCase{
		{"?", where("tenant_id = ?"), nil},
		{"?1", where("tenant_id = ?1"), nil},
		{"$1", where("tenant_id = $1"), nil},
		{":name", where("tenant_id = :tenant"), nil},
		{":1", where("tenant_id = :1"), nil},
		{"@name", where("tenant_id = @tenant"), nil},
		{"@@name", where("tenant_id = @@tenant"), nil},
		{"%s", where("tenant_id = %s"), nil},
		{"%(name)s", where("tenant_id = %(tenant)s"), nil},
		{"#{} template", where("tenant_id = #{tenantId}"), nil},
		{"${} template", where("tenant_id = ${tenant}"), nil},
		{"IN list", where("tenant_id IN (?, ?)"), nil},
		{"IN subquery", where("tenant_id IN (SELECT tenant_id FROM memberships WHERE user_id = ?)"), nil},
		{"string literal", where("tenant_id = 'acme'"), nil},
		{"N string", where("tenant_id = N'acme'"), nil},
		{"E string", where(`tenant_id = E'ac\'me'`), nil},
		{"dollar string", where("tenant_id = $$acme$$"), nil},
		{"MySQL double-quoted string", where(`tenant_id = "acme"`), nil},
		{"number", where("tenant_id = 42"), nil},
		{"negative number", where("tenant_id = -1"), nil},
		{"ANY", where("tenant_id = ANY($1)"), nil},
		{"cast placeholder", where("tenant_id = ?::uuid"), nil},
		{"cast column", where("tenant_id::text = ?"), nil},
		{"CAST", where("tenant_id = CAST(? AS uuid)"), nil},
		{"setting", where("tenant_id = current_setting('app.tenant_id')::uuid"), nil},
		{"typed literal", where("tenant_id = uuid '6b2f0c3e-6a43-4a43-9a1c-0c5b0f0e1d2a'"), nil},
		{"scalar subquery", where("tenant_id = (SELECT tenant_id FROM users WHERE id = ?)"), nil},
		{"value on the left", where("? = tenant_id"), nil},
		{"null-safe equality", where("tenant_id <=> ?"), nil},
		{"IS NOT DISTINCT FROM", where("tenant_id IS NOT DISTINCT FROM $1"), nil},
		{"row value", where("(tenant_id, id) = (?, ?)"), nil},
		{"row value IN", where("(id, tenant_id) IN ((?, ?), (?, ?))"), nil},
		{"with other predicates", where("status = 'open' AND tenant_id = ? AND total > 10"), nil},
		{"parenthesised", where("(tenant_id = ?)"), nil},
		{"with BETWEEN", where("created_at BETWEEN ? AND ? AND tenant_id = ?"), nil},
	})
}

func TestSQLScopeNotScoping(t *testing.T) {
	where := func(pred string) string { return "SELECT * FROM orders WHERE " + pred }
	runSQLCases(t, []sqlCase{
		// IS NULL selects rows of no tenant, and = NULL matches nothing: neither names a tenant.
		{"IS NULL", where("tenant_id IS NULL"), wantOrders},
		{"IS NOT NULL", where("tenant_id IS NOT NULL"), wantOrders},
		{"= NULL", where("tenant_id = NULL"), wantOrders},
		// <> and != select every tenant but one.
		{"<>", where("tenant_id <> ?"), wantOrders},
		{"!=", where("tenant_id != ?"), wantOrders},
		{"NOT IN", where("tenant_id NOT IN (?, ?)"), wantOrders},
		{"greater", where("tenant_id > ?"), wantOrders},
		{"LIKE", where("tenant_id LIKE ?"), wantOrders},
		{"BETWEEN", where("tenant_id BETWEEN ? AND ?"), wantOrders},
		{"IS DISTINCT FROM", where("tenant_id IS DISTINCT FROM ?"), wantOrders},
		// tenant_id = tenant_id is true of every row that has a tenant.
		{"self comparison", where("tenant_id = tenant_id"), wantOrders},
		{"qualified self comparison", "SELECT * FROM orders o WHERE o.tenant_id = o.tenant_id", wantOrders},
		{"other column", where("tenant_id = owner_tenant"), wantOrders},
		{"other qualified column", "SELECT * FROM orders o WHERE o.tenant_id = o.owner_tenant", wantOrders},
		{"NOT", where("NOT (tenant_id = ?)"), wantOrders},
		{"NOT of <>", where("NOT tenant_id <> ?"), wantOrders},
		{"function of the column", where("lower(tenant_id) = lower(?)"), wantOrders},
		{"row value with a column", where("(tenant_id, id) = (owner_tenant, ?)"), wantOrders},
		{"predicate in HAVING", "SELECT tenant_id, count(*) FROM orders GROUP BY tenant_id HAVING tenant_id = ?", wantOrders},
		{"predicate in select list", "SELECT tenant_id = ? FROM orders", wantOrders},
		{"predicate in ORDER BY", "SELECT * FROM orders ORDER BY tenant_id = ? DESC", wantOrders},
		{"SET is not a predicate", "UPDATE orders SET tenant_id = ? WHERE id = ?", wantOrders},
		{"empty WHERE", "SELECT * FROM orders WHERE ;", wantOrders},
	})
}

func TestSQLScopeLiteralsAndComments(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"in a string", "SELECT * FROM orders WHERE note = 'tenant_id = ?'", wantOrders},
		{"in a string with an escaped quote", "SELECT * FROM orders WHERE note = 'it''s tenant_id = ?'", wantOrders},
		{"in a backslash-escaped string", `SELECT * FROM orders WHERE note = 'it\'s AND tenant_id = ?'`, wantOrders},
		{"in a dollar string", "SELECT * FROM orders WHERE note = $x$ AND tenant_id = ? $x$", wantOrders},
		{"in a line comment", "SELECT * FROM orders -- WHERE tenant_id = ?", wantOrders},
		{"in a line comment mid-query", "SELECT * FROM orders\n-- AND tenant_id = ?\nWHERE id = ?", wantOrders},
		{"in a block comment", "SELECT * FROM orders WHERE id = ? /* AND tenant_id = ? */", wantOrders},
		{"comment before the predicate", "SELECT * FROM orders /* scoped */ WHERE tenant_id = ?", nil},
		{"escaped quotes then predicate", "SELECT * FROM orders WHERE note = 'it''s' AND tenant_id = ?", nil},
		{"table in a string", "SELECT 'FROM orders' FROM stock WHERE tenant_id = ?", nil},
		{"table in a comment", "SELECT * FROM stock WHERE tenant_id = ? -- see orders", nil},
		{"minus is not a comment", "SELECT * FROM orders WHERE total - 1 > 0 AND tenant_id = ?", nil},
		{"division is not a comment", "SELECT total / 2 FROM orders WHERE tenant_id = ?", nil},
	})
}

func TestSQLScopeOr(t *testing.T) {
	where := func(pred string) string { return "SELECT * FROM orders WHERE " + pred }
	runSQLCases(t, []sqlCase{
		{"OR bypass", where("tenant_id = ? OR 1=1"), wantOrders},
		{"OR before", where("1=1 OR tenant_id = ?"), wantOrders},
		{"OR of other column", where("tenant_id = ? AND status = 'open' OR id = ?"), wantOrders},
		{"both branches", where("tenant_id = ? OR tenant_id = ?"), nil},
		{"both branches with more", where("(tenant_id = ? AND a = 1) OR (tenant_id = ? AND b = 2)"), nil},
		{"OR inside parentheses", where("tenant_id = ? AND (status = 'open' OR status = 'new')"), nil},
		{"bypass inside parentheses", where("(tenant_id = ? OR 1=1) AND status = 'open'"), wantOrders},
		{"XOR", where("tenant_id = ? XOR archived"), wantOrders},
		{"BETWEEN AND is no conjunction", where("tenant_id = ? AND total BETWEEN 1 AND 2 OR id = 1"), wantOrders},
		{"OR in CASE", where("CASE WHEN a = 1 OR b = 2 THEN 1 ELSE 0 END = 1 AND tenant_id = ?"), nil},
		{"OR in a join", "SELECT * FROM orders o JOIN stock s ON s.sku = o.sku AND (s.tenant_id = ? OR s.public) WHERE o.tenant_id = ?", wantStock},
		{"OR in a subquery", where("tenant_id = ? AND sku IN (SELECT sku FROM stock WHERE tenant_id = ? OR 1=1)"), wantStock},
	})
}

func TestSQLScopeSubqueries(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"outer unscoped", "SELECT * FROM orders WHERE sku IN (SELECT sku FROM stock WHERE tenant_id = ?)", wantOrders},
		{"inner unscoped", "SELECT * FROM orders WHERE tenant_id = ? AND sku IN (SELECT sku FROM stock)", wantStock},
		{"both scoped", "SELECT * FROM orders WHERE tenant_id = ? AND sku IN (SELECT sku FROM stock WHERE tenant_id = ?)", nil},
		{"each scope its own", "SELECT * FROM orders WHERE tenant_id = ? AND sku IN (SELECT sku FROM orders WHERE id = ?)", wantOrders},
		{"correlated EXISTS", "SELECT * FROM orders o WHERE o.tenant_id = ? AND EXISTS (SELECT 1 FROM stock s WHERE s.sku = o.sku AND s.tenant_id = o.tenant_id)", nil},
		{"correlated to an unscoped outer", "SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM stock s WHERE s.tenant_id = o.tenant_id)", wantBoth},
		{"outer predicate inside does not scope the outer", "SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM stock s WHERE s.tenant_id = ? AND o.tenant_id = ?)", wantOrders},
		{"NOT EXISTS", "SELECT * FROM orders o WHERE o.tenant_id = ? AND NOT EXISTS (SELECT 1 FROM stock s WHERE s.sku = o.sku)", wantStock},
		{"scalar subquery in select list", "SELECT o.id, (SELECT count(*) FROM stock s WHERE s.sku = o.sku AND s.tenant_id = o.tenant_id) FROM orders o WHERE o.tenant_id = ?", nil},
		{"scalar subquery in select list unscoped", "SELECT o.id, (SELECT count(*) FROM stock s WHERE s.sku = o.sku) FROM orders o WHERE o.tenant_id = ?", wantStock},
		{"derived table", "SELECT * FROM (SELECT * FROM orders WHERE tenant_id = ?) t", nil},
		{"derived table scoped outside only", "SELECT * FROM (SELECT * FROM orders) t WHERE t.tenant_id = ?", wantOrders},
		{"derived table joined on tenant", "SELECT * FROM (SELECT * FROM orders WHERE tenant_id = ?) o JOIN stock s ON s.tenant_id = o.tenant_id", nil},
		{"derived table of an unscoped table", "SELECT * FROM (SELECT tenant_id FROM customers) c JOIN stock s ON s.tenant_id = c.tenant_id", wantStock},
		{"subquery in HAVING", "SELECT sku FROM orders WHERE tenant_id = ? GROUP BY sku HAVING count(*) > (SELECT min(qty) FROM stock)", wantStock},
		{"subquery in ORDER BY", "SELECT * FROM orders WHERE tenant_id = ? ORDER BY (SELECT 1 FROM stock LIMIT 1)", wantStock},
		{"nested parentheses", "SELECT * FROM orders WHERE tenant_id = ? AND sku IN ((SELECT sku FROM stock))", wantStock},
		{"subquery in a function", "SELECT * FROM orders WHERE tenant_id = ? AND coalesce((SELECT 1 FROM stock), 0) = 1", wantStock},
		{"ARRAY subquery", "SELECT ARRAY(SELECT sku FROM stock WHERE tenant_id = ?) FROM orders WHERE tenant_id = ?", nil},
		{"VALUES derived table", "SELECT * FROM (VALUES (1), (2)) v(x) JOIN orders o ON o.id = v.x WHERE o.tenant_id = ?", nil},
	})
}

func TestSQLScopeUpdateDelete(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"update scoped", "UPDATE orders SET status = ? WHERE tenant_id = ? AND id = ?", nil},
		{"update unscoped", "UPDATE orders SET status = ? WHERE id = ?", wantOrders},
		{"update all", "UPDATE orders SET status = 'x'", wantOrders},
		{"update alias", "UPDATE orders AS o SET status = ? WHERE o.tenant_id = ?", nil},
		{"update OR bypass", "UPDATE orders SET status = ? WHERE tenant_id = ? OR id = ?", wantOrders},
		{"update from", "UPDATE orders o SET qty = s.qty FROM stock s WHERE s.sku = o.sku AND o.tenant_id = ? AND s.tenant_id = o.tenant_id", nil},
		{"update from unscoped", "UPDATE orders o SET qty = s.qty FROM stock s WHERE s.sku = o.sku AND o.tenant_id = ?", wantStock},
		{"update join (MySQL)", "UPDATE orders o JOIN stock s ON s.sku = o.sku SET o.qty = s.qty WHERE o.tenant_id = ?", wantStock},
		{"update subquery in SET", "UPDATE orders SET qty = (SELECT max(qty) FROM stock) WHERE tenant_id = ?", wantStock},
		{"update subquery in WHERE", "UPDATE orders SET x = 1 WHERE tenant_id = ? AND sku IN (SELECT sku FROM stock WHERE tenant_id = ?)", nil},
		{"update TOP", "UPDATE TOP (10) orders SET x = 1 WHERE tenant_id = @t", nil},
		{"update returning", "UPDATE orders SET x = 1 WHERE id = ? RETURNING *", wantOrders},
		{"update low priority", "UPDATE LOW_PRIORITY IGNORE orders SET x = 1 WHERE tenant_id = ?", nil},
		{"update ONLY", "UPDATE ONLY orders SET x = 1 WHERE id = 1", wantOrders},
		{"delete scoped", "DELETE FROM orders WHERE tenant_id = ? AND id = ?", nil},
		{"delete unscoped", "DELETE FROM orders WHERE id = ?", wantOrders},
		{"delete all", "DELETE FROM orders", wantOrders},
		{"delete schema", "DELETE FROM shop.invoices WHERE id = ?", wantInvoices},
		{"delete returning", "DELETE FROM orders WHERE tenant_id = ? RETURNING id", nil},
		{"delete using", "DELETE FROM orders USING stock s WHERE orders.sku = s.sku AND orders.tenant_id = ?", wantStock},
		{"delete using scoped", "DELETE FROM orders o USING stock s WHERE o.sku = s.sku AND o.tenant_id = ? AND s.tenant_id = o.tenant_id", nil},
		{"delete join (MySQL)", "DELETE o FROM orders o JOIN stock s ON s.sku = o.sku WHERE o.tenant_id = ? AND s.tenant_id = ?", nil},
		{"delete join unscoped (MySQL)", "DELETE o, s FROM orders o JOIN stock s ON s.sku = o.sku WHERE o.tenant_id = ?", wantStock},
		{"delete without FROM (SQL Server)", "DELETE orders WHERE id = @id", wantOrders},
		{"delete limit", "DELETE FROM orders WHERE tenant_id = ? ORDER BY id LIMIT 10", nil},
		{"delete subquery", "DELETE FROM orders WHERE tenant_id = ? AND sku IN (SELECT sku FROM stock)", wantStock},
	})
}

func TestSQLScopeInsert(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"with tenant column", "INSERT INTO orders (id, tenant_id, total) VALUES (?, ?, ?)", nil},
		{"without tenant column", "INSERT INTO orders (id, total) VALUES (?, ?)", wantOrders},
		{"without column list", "INSERT INTO orders VALUES (?, ?, ?)", nil},
		{"quoted column", `INSERT INTO "orders" ("id", "Tenant_ID") VALUES ($1, $2)`, nil},
		{"schema", "INSERT INTO shop.invoices (id) VALUES (1)", wantInvoices},
		{"other table", "INSERT INTO customers (id) VALUES (?)", nil},
		{"multi-row", "INSERT INTO orders (id, total) VALUES (?, ?), (?, ?)", wantOrders},
		{"select scoped", "INSERT INTO orders (tenant_id, sku) SELECT ?, sku FROM stock WHERE tenant_id = ?", nil},
		{"select unscoped", "INSERT INTO orders (tenant_id, sku) SELECT tenant_id, sku FROM stock", wantStock},
		{"select, no tenant column", "INSERT INTO orders (sku) SELECT sku FROM stock WHERE tenant_id = ?", wantOrders},
		{"select with join", "INSERT INTO orders (tenant_id, sku) SELECT s.tenant_id, s.sku FROM stock s JOIN skus k ON k.id = s.sku WHERE s.tenant_id = ?", nil},
		{"parenthesised select", "INSERT INTO orders (tenant_id, sku) (SELECT tenant_id, sku FROM stock)", wantStock},
		{"with CTE", "WITH s AS (SELECT sku FROM stock WHERE tenant_id = ?) INSERT INTO orders (tenant_id, sku) SELECT ?, sku FROM s", nil},
		{"SET form", "INSERT INTO orders SET tenant_id = ?, id = ?", nil},
		{"SET form without tenant", "INSERT INTO orders SET id = ?", wantOrders},
		{"DEFAULT VALUES", "INSERT INTO orders DEFAULT VALUES", wantOrders},
		{"ON CONFLICT", "INSERT INTO orders (id, tenant_id) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET total = excluded.total", nil},
		{"ON DUPLICATE KEY", "INSERT INTO orders (id, tenant_id) VALUES (?, ?) ON DUPLICATE KEY UPDATE total = VALUES(total)", nil},
		{"ON CONFLICT without tenant", "INSERT INTO orders (id) VALUES (?) ON CONFLICT DO NOTHING", wantOrders},
		{"RETURNING", "INSERT INTO orders (id, tenant_id) VALUES (?, ?) RETURNING id", nil},
		{"IGNORE", "INSERT IGNORE INTO orders (tenant_id) VALUES (?)", nil},
		{"OR REPLACE (SQLite)", "INSERT OR REPLACE INTO orders (id) VALUES (?)", wantOrders},
		{"REPLACE (MySQL)", "REPLACE INTO orders (id) VALUES (?)", wantOrders},
		{"REPLACE scoped", "REPLACE INTO orders (id, tenant_id) VALUES (?, ?)", nil},
		{"alias (PostgreSQL)", "INSERT INTO orders AS o (id, tenant_id) VALUES (?, ?)", nil},
		{"subquery in VALUES", "INSERT INTO orders (id, tenant_id) VALUES ((SELECT max(id) FROM stock), ?)", wantStock},
		{"no rows", "INSERT INTO orders (id)", nil},
	})
}

func TestSQLScopeUnion(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"second branch", "SELECT id FROM orders WHERE tenant_id = ? UNION SELECT id FROM stock", wantStock},
		{"first branch", "SELECT id FROM orders UNION ALL SELECT id FROM stock WHERE tenant_id = ?", wantOrders},
		{"both", "SELECT id FROM orders WHERE tenant_id = ? UNION ALL SELECT id FROM stock WHERE tenant_id = ?", nil},
		{"same table", "SELECT id FROM orders WHERE tenant_id = ? UNION SELECT id FROM orders", wantOrders},
		{"parenthesised", "(SELECT id FROM orders WHERE tenant_id = ?) UNION (SELECT id FROM stock WHERE tenant_id = ?) ORDER BY 1 LIMIT 5", nil},
		{"parenthesised unscoped", "(SELECT id FROM orders WHERE tenant_id = ?) UNION (SELECT id FROM stock) ORDER BY 1", wantStock},
		{"intersect", "SELECT sku FROM orders WHERE tenant_id = ? INTERSECT SELECT sku FROM stock", wantStock},
		{"except", "SELECT sku FROM orders EXCEPT SELECT sku FROM stock WHERE tenant_id = ?", wantOrders},
		{"star except (BigQuery)", "SELECT * EXCEPT (note) FROM orders WHERE tenant_id = ?", nil},
		{"union in a subquery", "SELECT * FROM orders WHERE tenant_id = ? AND sku IN (SELECT sku FROM stock WHERE tenant_id = ? UNION SELECT sku FROM stock)", wantStock},
		{"union in a derived table", "SELECT * FROM (SELECT * FROM orders WHERE tenant_id = ? UNION ALL SELECT * FROM orders WHERE tenant_id = ?) o JOIN stock s ON s.tenant_id = o.tenant_id", nil},
		{"union in a derived table, one branch unscoped", "SELECT * FROM (SELECT tenant_id FROM orders WHERE tenant_id = ? UNION ALL SELECT tenant_id FROM customers) o JOIN stock s ON s.tenant_id = o.tenant_id", wantStock},
	})
}

func TestSQLScopeCTE(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"scoped body", "WITH x AS (SELECT * FROM orders WHERE tenant_id = ?) SELECT * FROM x", nil},
		{"unscoped body", "WITH x AS (SELECT * FROM orders) SELECT * FROM x WHERE x.tenant_id = ?", wantOrders},
		{"body and main", "WITH x AS (SELECT sku FROM stock WHERE tenant_id = ?) SELECT * FROM orders o JOIN x ON x.sku = o.sku", wantOrders},
		{"several", "WITH a AS (SELECT * FROM orders WHERE tenant_id = ?), b AS (SELECT * FROM stock) SELECT * FROM a JOIN b ON a.sku = b.sku", wantStock},
		{"column list and MATERIALIZED", "WITH x (id, sku) AS NOT MATERIALIZED (SELECT id, sku FROM orders WHERE tenant_id = ?) SELECT * FROM x", nil},
		{"name shadows a table", "WITH orders AS (SELECT * FROM shop.invoices WHERE tenant_id = ?) SELECT * FROM orders", nil},
		{"body reads the table it shadows", "WITH orders AS (SELECT * FROM orders) SELECT * FROM orders WHERE tenant_id = ?", wantOrders},
		{"qualified name is the table", "WITH orders AS (SELECT 1) SELECT * FROM public.orders", wantOrders},
		{"joined on tenant", "WITH t AS (SELECT * FROM orders WHERE tenant_id = ?) SELECT * FROM t JOIN stock s ON s.tenant_id = t.tenant_id", nil},
		{"joined on tenant of an unscoped table", "WITH t AS (SELECT tenant_id FROM customers) SELECT * FROM stock s JOIN t ON s.tenant_id = t.tenant_id", wantStock},
		{"used twice", "WITH t AS (SELECT * FROM orders WHERE tenant_id = ?) SELECT * FROM t a JOIN t b ON a.parent = b.id", nil},
		{"visible in a subquery", "WITH x AS (SELECT sku FROM stock WHERE tenant_id = ?) SELECT * FROM orders WHERE tenant_id = ? AND sku IN (SELECT sku FROM x)", nil},
		{"scope ends with its query", "SELECT * FROM (WITH orders AS (SELECT 1 AS id) SELECT * FROM orders) a, orders", wantOrders},
		{"nested WITH", "SELECT * FROM (WITH x AS (SELECT * FROM orders) SELECT * FROM x) y", wantOrders},
		{"recursive scoped", "WITH RECURSIVE tree AS (SELECT id, parent, tenant_id FROM orders WHERE tenant_id = ? AND parent IS NULL UNION ALL SELECT o.id, o.parent, o.tenant_id FROM orders o JOIN tree t ON o.parent = t.id AND o.tenant_id = t.tenant_id) SELECT * FROM tree", nil},
		{"recursive unscoped step", "WITH RECURSIVE tree AS (SELECT id, parent FROM orders WHERE tenant_id = ? UNION ALL SELECT o.id, o.parent FROM orders o JOIN tree t ON o.parent = t.id) SELECT * FROM tree", wantOrders},
		{"recursive with SEARCH", "WITH RECURSIVE t AS (SELECT id FROM orders WHERE tenant_id = ?) SEARCH DEPTH FIRST BY id SET ord SELECT * FROM t", nil},
		{"DELETE in a CTE", "WITH d AS (DELETE FROM orders WHERE id = ? RETURNING *) SELECT * FROM d", wantOrders},
		{"DELETE in a CTE scoped", "WITH d AS (DELETE FROM orders WHERE tenant_id = ? RETURNING *) INSERT INTO stock (tenant_id, sku) SELECT tenant_id, sku FROM d", nil},
		{"UPDATE after WITH", "WITH x AS (SELECT id FROM stock WHERE tenant_id = ?) UPDATE orders SET x = 1 WHERE id IN (SELECT id FROM x)", wantOrders},
		{"INSERT after WITH", "WITH x AS (SELECT 1 AS id) INSERT INTO orders (id) SELECT id FROM x", wantOrders},
	})
}

func TestSQLScopeStatements(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"two statements", "SELECT * FROM orders WHERE tenant_id = ?; SELECT * FROM stock", wantStock},
		{"two statements, both", "SELECT * FROM orders; DELETE FROM stock", wantBoth},
		{"trailing semicolon", "SELECT * FROM orders;", wantOrders},
		{"set then select", "SET search_path TO shop; SELECT * FROM invoices WHERE id = 1", nil},
		{"deduplicated", "SELECT * FROM orders; SELECT * FROM orders o JOIN orders p ON p.id = o.id", wantOrders},
		{"sorted", "SELECT * FROM stock, shop.invoices, orders", []string{"orders", "shop.invoices", "stock"}},
		{"DDL", "CREATE TABLE orders (id int, tenant_id uuid)", nil},
		{"DROP", "DROP TABLE orders", nil},
		{"TRUNCATE", "TRUNCATE orders", nil},
		{"ALTER", "ALTER TABLE orders ADD COLUMN note text", nil},
		{"EXPLAIN", "EXPLAIN SELECT * FROM orders", nil},
		{"TABLE (PostgreSQL)", "TABLE orders", wantOrders},
		{"SELECT INTO", "SELECT * INTO archive FROM orders WHERE tenant_id = ?", nil},
		{"FOR UPDATE", "SELECT * FROM orders WHERE tenant_id = ? FOR UPDATE", nil},
		{"DISTINCT FROM in select list", "SELECT a IS DISTINCT FROM b FROM orders WHERE tenant_id = ?", nil},
		{"EXTRACT FROM", "SELECT EXTRACT(YEAR FROM created_at) FROM orders WHERE tenant_id = ?", nil},
		{"window", "SELECT rank() OVER (PARTITION BY sku ORDER BY total) FROM orders WHERE tenant_id = ?", nil},
		{"WITHIN GROUP", "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total) FROM orders WHERE tenant_id = ?", nil},
		{"group by, limit, offset", "SELECT sku, sum(qty) FROM stock WHERE tenant_id = ? GROUP BY sku ORDER BY 2 DESC LIMIT 10 OFFSET 5", nil},
		{"fetch first", "SELECT * FROM orders ORDER BY id FETCH FIRST 10 ROWS ONLY", wantOrders},
	})
}

// TestSQLScopeORMs: statements as ORMs and drivers write them.
func TestSQLScopeORMs(t *testing.T) {
	runSQLCases(t, []sqlCase{
		{"Hibernate", "select o1_0.id,o1_0.total from orders o1_0 join stock s1_0 on s1_0.sku=o1_0.sku and s1_0.tenant_id=o1_0.tenant_id where o1_0.tenant_id=?", nil},
		{"Hibernate unscoped join", "select o1_0.id,s1_0.qty from orders o1_0 join stock s1_0 on s1_0.sku=o1_0.sku where o1_0.tenant_id=?", wantStock},
		{"Django", `SELECT "orders"."id", "orders"."total" FROM "orders" WHERE "orders"."tenant_id" = %s ORDER BY "orders"."id" DESC LIMIT 21`, nil},
		{"SQLAlchemy", "SELECT orders.id FROM orders WHERE orders.tenant_id = %(tenant_id_1)s AND orders.status IN (__[POSTCOMPILE_status_1])", nil},
		{"Rails", `SELECT "orders".* FROM "orders" WHERE "orders"."tenant_id" = $1 AND "orders"."id" = $2 LIMIT $3`, nil},
		{"Rails unscoped", `SELECT "orders".* FROM "orders" WHERE "orders"."id" = $1 LIMIT $2`, wantOrders},
		{"Prisma", `SELECT "public"."orders"."id" FROM "public"."orders" WHERE ("public"."orders"."tenant_id" = $1 AND 1=1) OFFSET $2`, nil},
		{"Sequelize", "SELECT `id`, `total` FROM `orders` AS `orders` WHERE `orders`.`tenant_id` = 'acme';", nil},
		{"GORM", `SELECT * FROM "orders" WHERE "orders"."tenant_id" = $1 AND "orders"."deleted_at" IS NULL ORDER BY "orders"."id" LIMIT 1`, nil},
		{"GORM soft delete only", `SELECT * FROM "orders" WHERE "orders"."deleted_at" IS NULL`, wantOrders},
		{"EF Core", "SELECT [o].[Id] FROM [orders] AS [o] WHERE [o].[tenant_id] = @__tenantId_0", nil},
		{"jOOQ", `select "public"."orders"."id" from "public"."orders" where "public"."orders"."tenant_id" = ?`, nil},
		{"sqlc", "-- name: ListOrders :many\nSELECT id, total FROM orders\nWHERE tenant_id = $1\nORDER BY id", nil},
		{"OpenTelemetry sanitised", "SELECT * FROM orders WHERE tenant_id = ? AND created_at > ?", nil},
	})
}

// TestSQLScopeNotUnderstood: text that is not SQL, or SQL that is cut short,
// malformed or too deep, is passed (nil) rather than guessed at.
func TestSQLScopeNotUnderstood(t *testing.T) {
	deep := "SELECT * FROM orders WHERE " + strings.Repeat("(", 200) + "id = 1" + strings.Repeat(")", 200)
	many := "SELECT * FROM " + strings.Repeat("customers, ", 70) + "orders"
	runSQLCases(t, []sqlCase{
		{"empty", "", nil},
		{"just the name", "orders", nil},
		{"redis", "HGETALL orders:42", nil},
		{"http", "GET /orders/42", nil},
		{"mongo", `{"find": "orders", "filter": {}}`, nil},
		{"mongo shell", "db.orders.find({})", nil},
		{"prose select", "select the orders for tenant", nil},
		{"prose update", "update orders failed", nil},
		{"prose delete", "delete orders", nil},
		{"span name", "SELECT shop.orders", nil},

		{"cut at =", "SELECT * FROM orders WHERE tenant_id =", nil},
		{"cut at WHERE", "SELECT * FROM orders WHERE", nil},
		{"cut at AND", "SELECT * FROM orders WHERE status = 'open' AND", nil},
		{"cut at JOIN", "SELECT * FROM orders o JOIN", nil},
		{"cut at comma", "SELECT * FROM orders o, ", nil},
		{"cut with ...", "SELECT * FROM orders WHERE status = 'open' AND ...", nil},
		{"cut with ellipsis", "SELECT * FROM orders WHERE status IN (1, 2, 3…", nil},
		{"cut in a string", "SELECT * FROM orders WHERE note = 'abc...", nil},
		{"cut, earlier statement complete", "SELECT * FROM stock; SELECT * FROM orders WHERE", wantStock},
		{"cut, subquery complete", "SELECT * FROM orders WHERE sku IN (SELECT sku FROM stock) AND", wantStock},
		{"cut in a subquery", "SELECT * FROM orders WHERE tenant_id = ? AND sku IN (SELECT sku FROM stock WHERE", nil},
		{"cut, union branch complete", "SELECT id FROM stock UNION SELECT id FROM orders WHERE", wantStock},
		{"cut, insert list complete", "INSERT INTO orders (id, total) VALUES (1,", wantOrders},

		{"unterminated string", "SELECT * FROM orders WHERE note = 'abc", nil},
		{"unterminated double quote", `SELECT * FROM "orders`, nil},
		{"unterminated backtick", "SELECT * FROM `orders", nil},
		{"unterminated bracket", "SELECT * FROM [orders", nil},
		{"unterminated comment", "SELECT * FROM orders /* WHERE tenant_id = ?", nil},
		{"unterminated dollar string", "SELECT * FROM orders WHERE a = $$x", nil},
		{"unclosed parenthesis", "SELECT * FROM orders WHERE (status = 'open'", nil},
		{"unopened parenthesis", "SELECT * FROM orders WHERE status = 'open')", nil},
		{"stray parenthesis", "SELECT * FROM orders)", nil},
		{"unclosed in another statement", "SELECT * FROM stock; SELECT (a FROM orders", nil},
		{"cut at a parenthesis, earlier statement complete", "SELECT * FROM stock; SELECT (", wantStock},
		{"too deep", deep, nil},
		{"too many tables", many, nil},
		{"from nothing", "SELECT * FROM WHERE tenant_id = ? ; SELECT * FROM orders", wantOrders},
		{"garbage", "SELECT ) FROM orders (", nil},
		{"parenthesised garbage", "(orders) something", nil},
	})
}

func TestSQLScopeLongStatements(t *testing.T) {
	s := newSQLScope(t)
	pad := strings.Repeat(" ", 70<<10)
	ids := strings.TrimSuffix(strings.Repeat("1, ", 30<<10), ", ")
	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{"after the limit is not read", "SELECT * FROM orders;" + pad + "SELECT * FROM stock", wantOrders},
		{"table only after the limit", "SELECT 1;" + pad + "SELECT * FROM orders", nil},
		{"cut mid-statement is not judged", "SELECT * FROM orders WHERE id IN (" + ids + ") AND tenant_id = ?", nil},
		{"cut in a comment", "SELECT * FROM stock WHERE tenant_id = ? /*" + pad + "*/", nil},
		{"complete statement before the cut", "SELECT * FROM stock WHERE id IN (" + ids[:20<<10] + ");" + pad, wantStock},
		{"long but under the limit", "SELECT * FROM orders WHERE id IN (" + ids[:40<<10] + ") AND tenant_id = ?", nil},
		{"long unscoped under the limit", "SELECT * FROM orders WHERE id IN (" + ids[:40<<10] + ")", wantOrders},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := s.Unscoped(tc.query); !slices.Equal(got, tc.want) {
				t.Errorf("Unscoped(%d bytes) = %q, want %q", len(tc.query), got, tc.want)
			}
		})
	}
}

func TestSQLScopeConfiguration(t *testing.T) {
	t.Run("qualified and unqualified", func(t *testing.T) {
		s, err := sqlscope.New([]string{"orders", "shop.orders"}, "tenant_id")
		if err != nil {
			t.Fatal(err)
		}
		for q, want := range map[string][]string{
			"SELECT * FROM shop.orders":   {"shop.orders"},
			"SELECT * FROM orders":        {"orders"},
			"SELECT * FROM crm.orders":    {"orders"},
			"SELECT * FROM `SHOP`.orders": {"shop.orders"},
		} {
			if got := s.Unscoped(q); !slices.Equal(got, want) {
				t.Errorf("Unscoped(%q) = %q, want %q", q, got, want)
			}
		}
	})
	t.Run("lower-cased, sorted and deduplicated", func(t *testing.T) {
		s, err := sqlscope.New([]string{" Stock ", "ORDERS", "orders", "Shop.Invoices"}, " Tenant_ID ")
		if err != nil {
			t.Fatal(err)
		}
		got := s.Unscoped("SELECT * FROM shop.invoices, stock, orders o WHERE o.TENANT_ID = ?")
		if want := []string{"shop.invoices", "stock"}; !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("non-ASCII names", func(t *testing.T) {
		s, err := sqlscope.New([]string{"bestellungen_ü"}, "mandant")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Unscoped("SELECT * FROM BESTELLUNGEN_ü WHERE mandant = ?"); got != nil {
			t.Errorf("scoped: got %q", got)
		}
		if got := s.Unscoped("SELECT * FROM bestellungen_ü"); !slices.Equal(got, []string{"bestellungen_ü"}) {
			t.Errorf("unscoped: got %q", got)
		}
	})
	t.Run("errors name the input", func(t *testing.T) {
		for _, tc := range []struct {
			tables []string
			column string
			want   []string // substrings of the error
		}{
			{nil, "tenant_id", []string{"tables:"}},
			{[]string{"orders", ""}, "tenant_id", []string{"tables[1]", "empty"}},
			{[]string{"order items"}, "tenant_id", []string{"tables[0]", `"order items"`}},
			{[]string{`"orders"`}, "tenant_id", []string{"tables[0]", `"\"orders\""`}},
			{[]string{"db.shop.orders"}, "tenant_id", []string{"tables[0]", "db.shop.orders"}},
			{[]string{".orders"}, "tenant_id", []string{"tables[0]"}},
			{[]string{"orders"}, "", []string{"column:", "required"}},
			{[]string{"orders"}, "o.tenant_id", []string{"column:", `"o.tenant_id"`}},
			{[]string{"a b"}, "c d", []string{"tables[0]", "column:"}},
		} {
			_, err := sqlscope.New(tc.tables, tc.column)
			if err == nil {
				t.Errorf("NewSQLScope(%q, %q): no error", tc.tables, tc.column)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewSQLScope(%q, %q) = %q, want it to mention %q", tc.tables, tc.column, err, w)
				}
			}
		}
	})
}

func TestSQLScopeResultIsOwned(t *testing.T) {
	s := newSQLScope(t)
	a := s.Unscoped("SELECT * FROM orders")
	a[0] = "mutated"
	if b := s.Unscoped("SELECT * FROM orders"); !slices.Equal(b, wantOrders) {
		t.Fatalf("second call = %q after the caller changed the first result", b)
	}
}

func TestSQLScopeAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random")
	}
	s := newSQLScope(t)
	for _, tc := range []struct {
		name, query string
		max         float64
	}{
		{"no scoped table", sqlBenchMiss, 0},
		{"no scoped table, long", strings.Repeat("SELECT * FROM customers WHERE id = ?; ", 2000), 0},
		{"scoped", sqlBenchScoped, 0},
		{"unscoped", sqlBenchUnscoped, 1}, // the result
	} {
		s.Unscoped(tc.query) // warm the pool
		if got := testing.AllocsPerRun(100, func() { s.Unscoped(tc.query) }); got > tc.max {
			t.Errorf("%s: %v allocations per call, want at most %v", tc.name, got, tc.max)
		}
		// A statement the cache holds costs no allocation at all.
		s.UnscopedCached(tc.query)
		s.UnscopedCached(tc.query)
		if got := testing.AllocsPerRun(100, func() { s.UnscopedCached(tc.query) }); got > 0 && len(tc.query) <= 4<<10 {
			t.Errorf("%s: %v allocations per cached call, want none", tc.name, got)
		}
	}
}

func TestSQLScopeConcurrent(t *testing.T) {
	s := newSQLScope(t)
	queries := []struct {
		q    string
		want []string
	}{
		{sqlBenchScoped, nil},
		{sqlBenchUnscoped, wantStock},
		{sqlBenchMiss, nil},
		{"WITH x AS (SELECT * FROM orders) SELECT * FROM x, stock WHERE stock.tenant_id = ?", wantOrders},
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				c := queries[(g+i)%len(queries)]
				if got := s.Unscoped(c.q); !slices.Equal(got, c.want) {
					t.Errorf("Unscoped(%q) = %q, want %q", c.q, got, c.want)
					return
				}
				if got, _ := s.UnscopedCached(c.q); !slices.Equal(got, c.want) {
					t.Errorf("UnscopedCached(%q) = %q, want %q", c.q, got, c.want)
					return
				}
			}
		})
	}
	wg.Wait()
}

const (
	// sqlBenchScoped is a typical ORM query: about 200 bytes, a join, both
	// tables scoped.
	sqlBenchScoped = `SELECT o.id, o.total, o.status, s.qty FROM orders o JOIN stock s ON s.sku = o.sku AND s.tenant_id = o.tenant_id WHERE o.tenant_id = $1 AND o.status = $2 ORDER BY o.created_at DESC LIMIT 50`
	// sqlBenchUnscoped is the same query without the join's tenant equality.
	sqlBenchUnscoped = `SELECT o.id, o.total, o.status, s.qty, s.location FROM orders o JOIN stock s ON s.sku = o.sku WHERE o.tenant_id = $1 AND o.status = $2 ORDER BY o.created_at DESC LIMIT 50`
	// sqlBenchMiss names no scoped table.
	sqlBenchMiss = `SELECT c.id, c.name, c.email, a.city FROM customers c JOIN addresses a ON a.customer_id = c.id WHERE c.region = $1 AND c.created_at > $2 ORDER BY c.created_at DESC LIMIT 50`
)

func BenchmarkUnscoped(b *testing.B) {
	s := newSQLScope(b)
	for _, bc := range []struct{ name, query string }{
		{"scoped-join", sqlBenchScoped},
		{"unscoped-join", sqlBenchUnscoped},
		{"no-scoped-table", sqlBenchMiss},
	} {
		b.Run(fmt.Sprintf("%s-%dB", bc.name, len(bc.query)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.query)))
			for b.Loop() {
				s.Unscoped(bc.query)
			}
		})
	}
}
