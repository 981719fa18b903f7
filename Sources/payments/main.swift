import PaymentsCLI

PaymentsCommand.main()
