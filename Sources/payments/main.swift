import Foundation
import PaymentsCore

exit(CommandLineTool.main(arguments: CommandLine.arguments, environment: ProcessInfo.processInfo.environment))
